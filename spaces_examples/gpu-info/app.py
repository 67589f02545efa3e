"""What torch sees inside the space, and a timed matrix product on it (CUDA when given a GPU, else the CPU)."""

import os
import platform
import time

import gradio as gr
import spaces  # before torch touches CUDA, as ZeroGPU requires
import torch
from spaces.config import Config as SpacesConfig

MAX_N = 8192


def device() -> torch.device:
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def info() -> dict[str, object]:
    """The devices torch sees, and how the `spaces` package behaves here."""
    report: dict[str, object] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_build": torch.version.cuda,
        "device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "device": str(device()),
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "SPACE_ID": os.environ.get("SPACE_ID"),
        "zero_gpu": SpacesConfig.zero_gpu,
        # Off ZeroGPU, @spaces.GPU hands back the very function it decorates.
        "spaces_gpu_decorator": "passthrough" if getattr(matmul, "zerogpu", "absent") == "absent" else "zerogpu",
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        report.update(device_name=props.name, total_memory_gb=round(props.total_memory / 2**30, 1),
                      capability=f"{props.major}.{props.minor}", device_uuid=str(getattr(props, "uuid", "")))
    else:
        report["device_name"] = platform.processor() or platform.machine()
    return report


@spaces.GPU(duration=30)
def matmul(n: float) -> dict[str, object]:
    """Multiply two random n x n float32 matrices on the space's device; time it and check the result."""
    size = int(n)
    if not 1 <= size <= MAX_N:
        raise gr.Error(f"n must be between 1 and {MAX_N}")
    dev = device()
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(size, size, generator=generator).to(dev)
    b = torch.rand(size, size, generator=generator).to(dev)
    torch.mm(a, b)  # warm-up: the first call pays for kernel selection and allocation
    if dev.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    product = torch.mm(a, b)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    # A corner of the product recomputed in float64 on the CPU: the device's answer must agree.
    corner = min(size, 8)
    expected = a[:corner].double().cpu() @ b[:, :corner].double().cpu()
    error = float((product[:corner, :corner].double().cpu() - expected).abs().max())
    return {
        "device": str(dev),
        "device_name": info()["device_name"],
        "n": size,
        "seconds": round(seconds, 6),
        "gflops": round(2 * size**3 / max(seconds, 1e-9) / 1e9, 2),
        "max_abs_error": error,
        "checksum": round(float(product.double().sum()), 3),
    }


with gr.Blocks(title="GPU info") as demo:
    gr.Markdown("# GPU info\nWhat `torch` sees in this space, and a timed matrix product on that device.")
    report = gr.JSON(label="Devices", value=info)
    gr.Button("Refresh").click(info, None, report, api_name="info")
    size = gr.Number(value=1024, precision=0, label="Matrix size n (n x n @ n x n)")
    result = gr.JSON(label="Matrix product")
    gr.Button("Multiply", variant="primary").click(matmul, size, result, api_name="matmul")

if __name__ == "__main__":
    demo.launch()
