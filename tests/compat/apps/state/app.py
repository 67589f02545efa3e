"""Per-session state: each call adds to a counter kept in gr.State."""

import gradio as gr


def add(step: float, total: float) -> tuple[float, float]:
    total = total + step
    return total, total


with gr.Blocks() as demo:
    total = gr.State(0.0)
    step = gr.Number(value=1, label="Step")
    shown = gr.Number(label="Total")
    gr.Button("Add").click(add, [step, total], [shown, total], api_name="add")

if __name__ == "__main__":
    demo.launch()
