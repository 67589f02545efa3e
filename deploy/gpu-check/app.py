"""The space of deploy/gpu-check.sh: a minimal torch HTTP app, stdlib + torch only (no gradio, nothing else).

Started by spacehub's process runtime like any space (PORT, GRADIO_SERVER_NAME, CUDA_VISIBLE_DEVICES from the
allocator). `GET /health` answers once torch is imported; `GET /?n=N` reports what torch sees and multiplies two
n x n float32 matrices on the first visible device (CUDA if any, else the CPU), timed, with a float64 check.
"""

from __future__ import annotations

import json
import os
import platform
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import torch

MAX_N = 16384


def devices() -> dict[str, object]:
    report: dict[str, object] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda,
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cuda_available": torch.cuda.is_available(),
        "device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        report.update(device_name=props.name, device_uuid=str(getattr(props, "uuid", "")),
                      total_memory_gb=round(props.total_memory / 2**30, 1))
    return report


def matmul(size: int) -> dict[str, object]:
    dev = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(size, size, generator=generator).to(dev)
    b = torch.rand(size, size, generator=generator).to(dev)
    torch.mm(a, b)  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    product = torch.mm(a, b)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    corner = min(size, 8)
    expected = a[:corner].double().cpu() @ b[:, :corner].double().cpu()
    error = float((product[:corner, :corner].double().cpu() - expected).abs().max())
    return {"device": str(dev), "n": size, "seconds": round(seconds, 6),
            "tflops": round(2 * size**3 / max(seconds, 1e-9) / 1e12, 3), "max_abs_error": error}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/health":
            self._send(200, {"ok": True})
            return
        if url.path != "/":
            self._send(404, {"error": "not found"})
            return
        try:
            size = int(parse_qs(url.query).get("n", ["1024"])[0])
            if not 1 <= size <= MAX_N:
                raise ValueError
        except ValueError:
            self._send(400, {"error": f"n must be an integer from 1 to {MAX_N}"})
            return
        self._send(200, {**devices(), "matmul": matmul(size)})

    def _send(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


if __name__ == "__main__":
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("PORT", "7860"))
    print(f"gpu-check app: torch {torch.__version__}, listening on {host}:{port}", flush=True)
    ThreadingHTTPServer((host, port), Handler).serve_forever()
