"""Image in, processed image out: a few filters in NumPy and Pillow."""

from collections.abc import Callable

import gradio as gr
import numpy as np
from PIL import Image, ImageFilter

# Rows give the output R, G, B as mixes of the input R, G, B (the usual sepia tone matrix).
SEPIA = np.array([[0.393, 0.769, 0.189],
                  [0.349, 0.686, 0.168],
                  [0.272, 0.534, 0.131]])


def sepia(image: Image.Image, strength: int) -> Image.Image:
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    toned = np.clip(pixels @ SEPIA.T, 0, 255)
    return Image.fromarray(np.rint(toned).astype(np.uint8))


def grayscale(image: Image.Image, strength: int) -> Image.Image:
    return image.convert("L").convert("RGB")


def invert(image: Image.Image, strength: int) -> Image.Image:
    return Image.fromarray(255 - np.asarray(image.convert("RGB"), dtype=np.uint8))


def edges(image: Image.Image, strength: int) -> Image.Image:
    return image.convert("L").filter(ImageFilter.FIND_EDGES).convert("RGB")


def blur(image: Image.Image, strength: int) -> Image.Image:
    return image.convert("RGB").filter(ImageFilter.GaussianBlur(radius=max(1, strength)))


def pixelate(image: Image.Image, strength: int) -> Image.Image:
    block = max(2, strength)
    rgb = image.convert("RGB")
    small = rgb.resize((max(1, rgb.width // block), max(1, rgb.height // block)), Image.Resampling.BOX)
    return small.resize(rgb.size, Image.Resampling.NEAREST)


FILTERS: dict[str, Callable[[Image.Image, int], Image.Image]] = {
    "sepia": sepia, "grayscale": grayscale, "invert": invert, "edges": edges, "blur": blur, "pixelate": pixelate,
}


def apply(image: Image.Image | None, name: str, strength: float) -> Image.Image:
    if image is None:
        raise gr.Error("Upload an image first.")
    if name not in FILTERS:
        raise gr.Error(f"Unknown filter {name!r}; pick one of {', '.join(FILTERS)}.")
    return FILTERS[name](image, int(strength))


demo = gr.Interface(
    fn=apply,
    inputs=[gr.Image(type="pil", label="Image"),
            gr.Radio(list(FILTERS), value="sepia", label="Filter"),
            gr.Slider(1, 32, value=4, step=1, label="Strength (blur radius, pixel block size)")],
    # PNG, not Gradio's default WebP: lossless, so what comes back is exactly what the filter made.
    outputs=gr.Image(type="pil", format="png", label="Result"),
    title="Image filter",
    api_name="apply",
    flagging_mode="never",
)

if __name__ == "__main__":
    demo.launch()
