#!/usr/bin/env bash
# Download the wheels deploy/gpu-check.sh needs into deploy/gpu-check/wheels, for a GPU machine without a package
# registry. Run it where PyPI is reachable; then carry the folder (about 10 MB) with the checkout.
#   deploy/gpu-check/fetch-wheels.sh [PYTHON_VERSION (default 3.12)] [PLATFORM (default manylinux_2_28_x86_64)]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="${1:-3.12}"
plat="${2:-manylinux_2_28_x86_64}"
dest="${GPU_CHECK_WHEELS:-$here/wheels}"
mkdir -p "$dest"
# --only-binary: the target has no compiler and no registry; --python-version/--platform: its interpreter, not ours.
python3 -m pip download --quiet --only-binary=:all: --python-version "$version" --implementation cp \
    --platform "$plat" --platform manylinux2014_x86_64 --platform any --dest "$dest" -r "$here/requirements.txt"
ls -1 "$dest"
du -sh "$dest"
