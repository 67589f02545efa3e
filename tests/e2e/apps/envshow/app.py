import os

import gradio as gr


def read_env() -> str:
    return f"GREETING={os.environ.get('GREETING', '<unset>')} SECRET_WORD={os.environ.get('SECRET_WORD', '<unset>')}"


with gr.Blocks(title="Env show") as demo:
    button = gr.Button("Read the environment")
    shown = gr.Textbox(label="Environment")
    button.click(read_env, outputs=shown, api_name="read_env")

if __name__ == "__main__":
    demo.launch()
