"""Progress updates while a job runs."""

import time

import gradio as gr


def count(n: float, progress: gr.Progress = gr.Progress()) -> str:
    for _ in progress.tqdm(range(int(n)), desc="Counting"):
        time.sleep(0.05)
    return f"counted {int(n)}"


demo = gr.Interface(count, gr.Number(value=5, label="How many"), gr.Textbox(), api_name="count")

if __name__ == "__main__":
    demo.launch()
