"""Audio in and out: the clip comes back at half the volume."""

import gradio as gr
import numpy as np


def halve(audio: tuple[int, np.ndarray]) -> tuple[int, np.ndarray]:
    rate, samples = audio
    return rate, (samples // 2).astype(samples.dtype)


demo = gr.Interface(halve, gr.Audio(type="numpy", label="Clip"), gr.Audio(type="numpy", format="wav"),
                    api_name="halve")

if __name__ == "__main__":
    demo.launch()
