"""Gradio mounted under a sub-path of a FastAPI app, served by uvicorn directly (no `launch()`)."""

import os

import gradio as gr
import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/myapp/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


def shout(text: str) -> str:
    return text.upper() + "!"


demo = gr.Interface(fn=shout, inputs=gr.Textbox(label="Text"), outputs=gr.Textbox(label="Shouted"),
                    api_name="shout")
app = gr.mount_gradio_app(app, demo, path="/myapp/gradio")

if __name__ == "__main__":
    uvicorn.run(app, host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
