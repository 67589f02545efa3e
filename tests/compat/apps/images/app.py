"""Images in and out: the picture comes back mirrored left to right."""

import gradio as gr
import numpy as np


def mirror(image: np.ndarray) -> np.ndarray:
    return image[:, ::-1]


demo = gr.Interface(mirror, gr.Image(type="numpy", label="Picture"), gr.Image(type="numpy", format="png"),
                    api_name="mirror")

if __name__ == "__main__":
    demo.launch()
