"""Reads the request: a header the caller sent, and whether the platform's credentials reached the app."""

import gradio as gr


def echo(name: str, request: gr.Request) -> dict:
    headers = request.headers
    return {"name": name, "x-compat": headers.get("x-compat", ""),
            "has-x-hf-authorization": "x-hf-authorization" in headers}


demo = gr.Interface(echo, gr.Textbox(label="Name"), gr.JSON(label="Seen"), api_name="echo")

if __name__ == "__main__":
    demo.launch()
