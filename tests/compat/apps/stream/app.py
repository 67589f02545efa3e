"""A streaming chat: the reply arrives word by word."""

import time

import gradio as gr


def reply(message: str, history: list) -> str:
    text = ""
    for word in f"You said: {message}".split():
        text = f"{text} {word}".strip()
        time.sleep(0.05)
        yield text


demo = gr.ChatInterface(reply, api_name="chat")

if __name__ == "__main__":
    demo.launch()
