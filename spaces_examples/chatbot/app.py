"""A deterministic, rule-based chat bot whose answers stream token by token (no model needed)."""

import ast
import operator
import os
import re
import time
from collections.abc import Iterator

import gradio as gr

TOKEN_DELAY_S = float(os.environ.get("TOKEN_DELAY_S", "0.05"))
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.USub: operator.neg, ast.UAdd: operator.pos}


def _evaluate(node: ast.AST) -> float:
    """Arithmetic only: numbers and + - * / (never eval())."""
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.operand))
    raise ValueError("not arithmetic")


def answer(message: str) -> str:
    text = message.strip()
    lowered = text.lower().rstrip("?!. ")
    if not text:
        return "Say something and I will answer, one token at a time."
    if re.fullmatch(r"(hello|hi|hey)( there)?", lowered):
        return "Hello! I am a small rule-based bot. Ask me some arithmetic, or to count to a number."
    if match := re.fullmatch(r"count to (\d{1,2})", lowered):
        return " ".join(str(n) for n in range(1, int(match.group(1)) + 1))
    if match := re.fullmatch(r"(what is|compute|calculate)\s+([-+*/().\d\s]+)", lowered):
        try:
            value = _evaluate(ast.parse(match.group(2), mode="eval"))
        except (ValueError, SyntaxError, ZeroDivisionError):
            return "I cannot compute that, sorry."
        shown = int(value) if float(value).is_integer() else round(value, 6)
        return f"{match.group(2).strip()} = {shown}"
    return f"You said: {text}. I only know greetings, arithmetic and counting, so I repeat what I hear."


def tokens(text: str) -> list[str]:
    """Word-sized pieces, each keeping the space before it, so joining them gives the text back."""
    return re.findall(r"\s*\S+", text)


def respond(message: str, history: list[dict[str, str]]) -> Iterator[str]:
    partial = ""
    for token in tokens(answer(message)):
        time.sleep(TOKEN_DELAY_S)
        partial += token
        yield partial


demo = gr.ChatInterface(
    respond,
    title="Chatbot",
    description="A rule-based bot that streams its answers token by token.",
    examples=["hello", "what is 12 * 7?", "count to 5"],
    api_name="chat",
)

if __name__ == "__main__":
    demo.launch()
