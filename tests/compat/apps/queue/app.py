"""A queue with a concurrency limit of one: overlapping calls run one after the other, never together."""

import threading
import time

import gradio as gr

running = 0
most = 0
lock = threading.Lock()


def work(tag: str) -> dict:
    global running, most
    with lock:
        running += 1
        most = max(most, running)
    time.sleep(0.3)
    with lock:
        running -= 1
    return {"tag": tag, "most_at_once": most}


demo = gr.Interface(work, gr.Textbox(label="Tag"), gr.JSON(), api_name="work", concurrency_limit=1)

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=1).launch()
