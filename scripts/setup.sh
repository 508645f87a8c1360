#!/usr/bin/env bash
# Set up seganypet on this machine: the CPU build of PyTorch, then the package.
#   bash scripts/setup.sh          the package, to use it
#   bash scripts/setup.sh --dev    also the test tools (pytest, ruff, playwright), dask for the
#                                  cluster engine of `seganypet batch` (the [cluster] extra), and Debian's
#                                  dicom3tools (dciodvfy validates the DICOM SEG we write),
#                                  chromium (the browser test drives the system's chromium; it
#                                  never needs `playwright install`) and orthanc with
#                                  orthanc-dicomweb (tests/test_dicomweb.py starts a real PACS)
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

if [ "$dev" = 1 ]; then
  apt_packages="dicom3tools chromium orthanc orthanc-dicomweb"
  missing=""
  for pkg in $apt_packages; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
      echo "setup: install these Debian packages for the full test suite:$missing (tests needing them skip)" >&2
    fi
  fi
fi

# A bare 'torch' requirement would pull the CUDA build (gigabytes); pin the CPU build first.
# Elsewhere: pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
python -m pip install -q "torch==2.13.0"
if [ "$dev" = 1 ]; then
  python -m pip install -q -e ".[test,cluster]"
else
  python -m pip install -q -e .
fi
