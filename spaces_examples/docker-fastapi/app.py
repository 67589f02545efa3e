"""A small FastAPI app: the page, a JSON endpoint, and what the platform told the app about itself."""

import os

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

app = FastAPI(title="FastAPI in Docker")


@app.get("/", response_class=HTMLResponse)
def index() -> str:
    space = os.environ.get("SPACE_ID", "a local run")
    return f"<!doctype html><title>FastAPI in Docker</title><h1>Hello from FastAPI</h1><p>Space: {space}</p>"


@app.get("/add")
def add(a: float, b: float) -> dict[str, float]:
    return {"a": a, "b": b, "sum": a + b}


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
