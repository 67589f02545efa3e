"""File upload and download: the uploaded file comes back reversed, with its size."""

import tempfile
from pathlib import Path

import gradio as gr


def reverse(path: str) -> tuple[str, int]:
    data = Path(path).read_bytes()
    out = Path(tempfile.mkdtemp()) / f"reversed-{Path(path).name}"
    out.write_bytes(data[::-1])
    return str(out), len(data)


demo = gr.Interface(reverse, gr.File(label="File", type="filepath"),
                    [gr.File(label="Reversed"), gr.Number(label="Bytes")], api_name="reverse")

if __name__ == "__main__":
    demo.launch()
