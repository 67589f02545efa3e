"""Cached examples: their outputs are computed at start-up and served from the cache."""

import gradio as gr


def square(x: float) -> float:
    return x * x


demo = gr.Interface(square, gr.Number(label="x"), gr.Number(label="x squared"), api_name="square",
                    examples=[[3], [12]], cache_examples=True)

if __name__ == "__main__":
    demo.launch()
