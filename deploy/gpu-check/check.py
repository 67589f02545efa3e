"""The GPU check, run by deploy/gpu-check.sh: spacehub's own allocator and process runtime on this machine.

1. Inventory: the devices spacehub would hand out (`SPACEHUB_GPUS`, else NVML, else `nvidia-smi`), with names.
2. Allocator: the real `GpuAllocator` (SQL rows in a scratch SQLite database) picks the device(s) of a space
   with GPU hardware, and shows that a second GPU space never gets the same card.
3. Space: the real `ProcessRuntime` starts deploy/gpu-check/app.py (stdlib + torch) with that hardware and
   those devices, waits for it, and asks it what torch sees and for a timed matrix product on the device.

Imports only spacehub's modules and their dependencies (not gradio, not the API, not the proxy): run it with
PYTHONPATH=platform:runner plus a folder where those dependencies' wheels were unpacked. `--dry-run` (CPU
machines, the tests) lets `SPACEHUB_GPUS=0` stand in for a device and expects the space to find no CUDA.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from spacehub.settings import Settings, load_settings
from spacehub.store.db import Database, migrate
from spacehub.store.models import Space
from spacehub_runner import gpus
from spacehub_runner.plugs import Artifact, BuildPlan, RunSpec
from spacehub_runner.runtimes.process import ProcessRuntime

HERE = Path(__file__).resolve().parent
HARDWARE = "t4-small"  # the Hub's smallest one-GPU flavor
MAX_ERROR = 1e-2  # float32 (or TF32) product vs float64 on a corner of the result; a wrong product is far off


def say(line: str = "") -> None:
    print(line, flush=True)


def device_names() -> dict[str, tuple[str, str]]:
    """index -> (name, UUID) as the driver reports them: NVML when importable, else nvidia-smi; else nothing."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            found = {}
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                name, uuid = pynvml.nvmlDeviceGetName(handle), pynvml.nvmlDeviceGetUUID(handle)
                found[str(index)] = (name.decode() if isinstance(name, bytes) else name,
                                     uuid.decode() if isinstance(uuid, bytes) else uuid)
            return found
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no nvidia-ml-py or no driver: try the CLI
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return {}
    try:
        out = subprocess.run([smi, "--query-gpu=index,name,uuid", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    rows = [[part.strip() for part in line.split(",")] for line in out.splitlines() if line.strip()]
    return {row[0]: (row[1], row[2]) for row in rows if len(row) == 3}


def pick_settings(data_dir: Path, dry_run: bool, names: dict[str, tuple[str, str]]) -> tuple[Settings, str]:
    """The settings the check runs with, and where its device inventory comes from."""
    settings = load_settings(data_dir=data_dir)
    if settings.gpus is not None:
        return settings, "SPACEHUB_GPUS"
    if dry_run:
        return load_settings(data_dir=data_dir, gpus=["0"]), "dry run: SPACEHUB_GPUS=0 stands in for a device"
    if gpus.inventory(settings):
        return settings, "NVML"
    if names:  # the driver is there but nvidia-ml-py is not: the same indices, from nvidia-smi
        return load_settings(data_dir=data_dir, gpus=sorted(names, key=int)), "nvidia-smi (nvidia-ml-py absent)"
    return settings, "none"


def app_env_dir(work: Path, app_python: str) -> Path:
    """A stand-in for a built environment: bin/python runs the interpreter that has torch.

    A wrapper script rather than a symlink, so a virtualenv's or conda's interpreter keeps its own site-packages.
    """
    env = work / "env"
    (env / "bin").mkdir(parents=True, exist_ok=True)
    python = env / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {shlex.quote(app_python)} "$@"\n')
    python.chmod(0o755)
    return env


def add_space(db: Database, name: str) -> int:
    with db.session() as session:
        space = Space(owner="gpu-check", name=name, key=f"gpu-check/{name}", label=f"gpu-check-{name}",
                      repo_type="space", sdk="gradio", hardware=HARDWARE)
        session.add(space)
        session.flush()
        return space.id


def run_space(settings: Settings, space_id: int, ids: list[str], work: Path, app_python: str, size: int,
              timeout: float) -> tuple[dict[str, Any], str]:
    """Start the app as a space with the allocated devices; (its report, how the runtime started it)."""
    runtime = ProcessRuntime(settings)
    app_dir = work / "app"
    app_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(HERE / "app.py", app_dir / "app.py")
    artifact = Artifact(kind="process-env", key="gpu-check", ref=str(app_dir),
                        env_path=str(app_env_dir(work, app_python)))
    spec = RunSpec(space_id=space_id, space_key="gpu-check/torch", revision="0" * 40,
                   plan=BuildPlan(recipe="gradio", app_file="app.py"),
                   env={"SYSTEM": "spaces", "SPACE_ID": "gpu-check/torch"}, hardware=HARDWARE,
                   gpu_ids=tuple(ids), log_dir=str(work / "logs"))
    handle = runtime.start(spec, artifact)
    started_by = "forked by the environment's fork-server" if handle.data.get("forked") else "plain `python app.py`"
    try:
        runtime.wait_ready(handle, timeout, path="/health")
        with urllib.request.urlopen(f"http://{handle.target}/?n={size}", timeout=timeout) as response:
            report: dict[str, Any] = json.loads(response.read())
        return report, started_by
    finally:
        runtime.stop(handle)
        log = Path(handle.data["log_file"])
        if log.is_file():
            say("  space log:")
            for line in log.read_text(errors="replace").splitlines()[-8:]:
                say(f"    {line}")
        if settings.fork_server:
            runtime.fork_server(artifact).shutdown()  # long-lived by design; the check leaves nothing behind


def show(report: dict[str, Any], started_by: str) -> None:
    say(f"  started: {started_by}")
    for key in ("python", "torch", "torch_cuda_build", "CUDA_VISIBLE_DEVICES", "cuda_available", "device_count",
                "device_name", "device_uuid", "total_memory_gb"):
        if key in report:
            say(f"  {key}: {report[key]}")
    product = report["matmul"]
    say(f"  matmul: {product['n']}x{product['n']} float32 on {product['device']} in {product['seconds']} s "
        f"({product['tflops']} TFLOP/s), max error {product['max_abs_error']:.2e}")


def verdict(report: dict[str, Any], ids: list[str], names: dict[str, tuple[str, str]], dry_run: bool) -> list[str]:
    """What is wrong with the space's report (empty: the check passed)."""
    problems = []
    if report["CUDA_VISIBLE_DEVICES"] != ",".join(ids):
        problems.append(f"the space saw CUDA_VISIBLE_DEVICES={report['CUDA_VISIBLE_DEVICES']!r}, not the "
                        f"allocated {','.join(ids)!r}")
    if report["matmul"]["max_abs_error"] > MAX_ERROR:
        problems.append(f"the matrix product is wrong (max error {report['matmul']['max_abs_error']})")
    if dry_run:
        if report["cuda_available"]:
            problems.append("dry run, yet the space found CUDA: run without --dry-run on a GPU machine")
        return problems
    if not report["cuda_available"]:
        problems.append("the space found no CUDA device: is torch a CUDA build "
                        f"(torch.version.cuda={report['torch_cuda_build']!r}) and the driver loaded?")
        return problems
    if report["device_count"] != len(ids):
        problems.append(f"the space sees {report['device_count']} device(s), allocated {len(ids)}")
    if not report["matmul"]["device"].startswith("cuda"):
        problems.append(f"the product ran on {report['matmul']['device']}, not on CUDA")
    expected_uuid = names.get(ids[0], ("", ""))[1] if ids else ""
    seen_uuid = str(report.get("device_uuid") or "")
    if expected_uuid and seen_uuid and seen_uuid.removeprefix("GPU-") != expected_uuid.removeprefix("GPU-"):
        problems.append(f"the space runs on {seen_uuid}, but the allocator chose {ids[0]} = {expected_uuid}: "
                        "CUDA numbers devices differently from NVML (set CUDA_DEVICE_ORDER=PCI_BUS_ID)")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="Scratch folder (data dir, logs, the app)")
    parser.add_argument("--app-python", default=sys.executable, help="Interpreter with torch; runs the space")
    parser.add_argument("--dry-run", action="store_true", help="CPU machine: a stand-in device, no CUDA expected")
    parser.add_argument("-n", "--size", type=int, default=0, help="Matrix size (default 8192, dry run 256)")
    parser.add_argument("--timeout", type=float, default=180.0, help="Seconds the space gets to answer")
    args = parser.parse_args()
    size = args.size or (256 if args.dry_run else 8192)
    data_dir = args.work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)

    say("==> Devices")
    names = device_names()
    settings, source = pick_settings(data_dir, args.dry_run, names)
    inventory = gpus.inventory(settings)
    say(f"  inventory ({source}): {', '.join(inventory) or 'none'}")
    for index, (name, uuid) in sorted(names.items()):
        say(f"  {index}: {name} {uuid}")
    if not inventory:
        say("FAILED: no GPU to hand out: NVML and nvidia-smi found none, and SPACEHUB_GPUS is unset")
        return 1

    say("==> Allocator")
    url = f"sqlite:///{data_dir / 'gpu-check.db'}"
    migrate(url)
    db = Database(url)
    allocator = gpus.GpuAllocator(settings, db)
    need = gpus.gpus_needed(settings, HARDWARE)
    first, second = add_space(db, "torch"), add_space(db, "torch-2")
    ids = allocator.acquire(first, gpus.new_lease("0" * 40), need)
    if ids is None:
        say(f"FAILED: the allocator found no free device for {need} GPU(s) among {inventory}")
        return 1
    described = ", ".join(f"{d} ({names[d][0]})" if d in names else d for d in ids)
    say(f"  gpu-check/torch ({HARDWARE}, {need} GPU) -> device {described}")
    other = allocator.acquire(second, gpus.new_lease("1" * 40), need)
    if other is None:
        say(f"  a second {HARDWARE} space -> waits ({gpus.waiting_message(need, len(inventory))})")
    else:
        say(f"  a second {HARDWARE} space -> device {', '.join(other)} (never the same card)")
        if set(other) & set(ids):
            say("FAILED: two spaces were handed the same device")
            return 1
        allocator.release(second)

    # Both ways the process runtime starts a Gradio-recipe app: forked from its environment's fork-server (the
    # default; it has imported torch already, so CUDA must still be untouched there), and plainly.
    problems: list[str] = []
    try:
        for fork in (True, False):
            mode = "fork-server" if fork else "plain start"
            say(f"==> Space (process runtime, {mode})")
            mode_settings = settings.model_copy(update={"fork_server": fork})
            report, started_by = run_space(mode_settings, first, ids, args.work / mode.replace(" ", "-"),
                                           args.app_python, size, args.timeout)
            show(report, started_by)
            problems += [f"{mode}: {problem}" for problem in verdict(report, ids, names, args.dry_run)]
    finally:
        allocator.release(first)

    for problem in problems:
        say(f"FAILED: {problem}")
    if not problems:
        say("DRY RUN PASSED (no GPU expected)" if args.dry_run else
            f"PASSED: the space ran on CUDA device {ids[0]} ({names.get(ids[0], ('', ''))[0] or 'see above'})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
