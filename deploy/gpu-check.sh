#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU and no package registry (Python and torch already installed; gradio
# and spacehub's other dependencies absent, unless carried as wheels). In a few minutes it shows:
#   - the devices spacehub would hand out and the GPU allocator's choice for a space with GPU hardware;
#   - from inside a space started by the process runtime with that hardware: torch.cuda.is_available(), the device
#     name, and a timed matrix product on it.
#
#   deploy/gpu-check.sh [--dry-run] [--wheels DIR] [--site DIR] [--keep] [-- CHECK OPTIONS]
#
#   --dry-run    CPU machine (and the tests): SPACEHUB_GPUS=0 stands in for a device; the space must find no CUDA
#   --wheels DIR wheels of spacehub's modules' dependencies (default deploy/gpu-check/wheels, made by
#                deploy/gpu-check/fetch-wheels.sh where PyPI is reachable); unpacked with the stdlib, no pip needed
#   --site DIR   a folder where those packages are already unpacked (instead of --wheels)
#   --keep       keep the scratch folder (database, logs)
# Environment: PYTHON runs the check (default python3); APP_PYTHON runs the space and must have torch (default
# $PYTHON); SPACEHUB_GPUS / SPACEHUB_GPU_SHARE / SPACEHUB_HARDWARE_TABLE as for the platform.
# It runs from the repo checkout: PYTHONPATH=platform:runner, nothing is installed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
here="$root/deploy/gpu-check"
PYTHON="${PYTHON:-python3}"
APP_PYTHON="${APP_PYTHON:-$PYTHON}"
wheels="${GPU_CHECK_WHEELS:-$here/wheels}"
site=""
keep=0
check_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) check_args+=(--dry-run) ;;
        --wheels) wheels="$2"; shift ;;
        --site) site="$2"; shift ;;
        --keep) keep=1 ;;
        --) shift; check_args+=("$@"); break ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

work="$(mktemp -d "${TMPDIR:-/tmp}/spacehub-gpu-check.XXXXXX")"
cleanup() { if [ "$keep" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

echo "==> Interpreters"
"$PYTHON" -c 'import sys; print("  check:", sys.executable, sys.version.split()[0])'
if ! "$APP_PYTHON" -c 'import sys, torch; print("  space:", sys.executable, sys.version.split()[0], "torch", torch.__version__)'; then
    echo "FAILED: $APP_PYTHON cannot import torch (set APP_PYTHON to the interpreter that has it)" >&2
    exit 1
fi

pythonpath="$root/platform:$root/runner${site:+:$site}"
# The one import that pulls in all the check needs: prints the first missing module, if any.
missing() {
    PYTHONPATH="$pythonpath" "$PYTHON" -c '
import sys
try:
    import spacehub_runner.gpus, spacehub_runner.runtimes.process, spacehub.store.db  # noqa: F401
except ModuleNotFoundError as exc:
    print(exc.name)
    sys.exit(1)'
}

echo "==> spacehub's modules"
if ! gone="$(missing)"; then
    if ! compgen -G "$wheels/*.whl" > /dev/null; then
        echo "FAILED: '$gone' is not importable and no wheels are in $wheels" >&2
        echo "  run deploy/gpu-check/fetch-wheels.sh where PyPI is reachable and carry the folder along" >&2
        exit 1
    fi
    # A wheel is a zip laid out as site-packages: unpacking it is all an install does that the check needs.
    "$PYTHON" - "$wheels" "$work/site" <<'PY'
import sys, zipfile
from pathlib import Path
wheels, target = Path(sys.argv[1]), Path(sys.argv[2])
found = sorted(wheels.glob("*.whl"))
for wheel in found:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
print(f"  unpacked {len(found)} wheels from {wheels}")
PY
    pythonpath="$pythonpath:$work/site"
    if ! gone="$(missing)"; then
        echo "FAILED: '$gone' is still missing after unpacking $wheels" >&2
        exit 1
    fi
fi
echo "  importable"

# The interpreter itself, not a launcher such as a pyenv shim (which would change the space's environment).
app_python="$("$APP_PYTHON" -c 'import sys; print(sys.executable)')"
PYTHONPATH="$pythonpath" "$PYTHON" "$here/check.py" --work "$work" --app-python "$app_python" \
    ${check_args[@]+"${check_args[@]}"}
