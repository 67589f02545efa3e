import time

import gradio as gr


def count(steps: float, delay: float = 0.5):
    """Yield a growing line, one step at a time, `delay` seconds apart."""
    text = ""
    for step in range(1, int(steps) + 1):
        time.sleep(delay)
        text += f"step {step} "
        yield text.strip()


demo = gr.Interface(fn=count, inputs=[gr.Number(value=4, label="Steps"), gr.Number(value=0.5, label="Delay (s)")],
                    outputs=gr.Textbox(label="Progress"), title="Streaming", api_name="count")

if __name__ == "__main__":
    demo.launch()
