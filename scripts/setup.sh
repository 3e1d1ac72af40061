#!/usr/bin/env bash
# Create or reuse the virtual environment and install everything dama-asr needs, system packages included.
# Idempotent: a second run only checks. Override the torch build with TORCH_SPEC (e.g. a CUDA build on a GPU box).
# DAMA_EXTRAS=deploy adds optional extras (deploy: faster-whisper, for `dama transcribe --engine faster-whisper`
# and the export benchmark's faster-whisper rows).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
# The CPU build of torch 2.13.0 is what this project is tested with; on machines whose pip finds it
# locally it avoids a multi-GB CUDA download. GPU users: TORCH_SPEC='torch' (or follow pytorch.org).
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
# espeak-ng: synthetic speech; chromium: headless rendering of `dama report` pages in tests;
# libtcmalloc-minimal4: the allocator `dama` runs on (about 1.5x faster training steps; src/dama_asr/allocator.py).
DEB_PACKAGES=(espeak-ng chromium libtcmalloc-minimal4)

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
# `dama data synth`/`czech-fillets` fetch Debian packages with `apt-get download`, which needs package lists.
if [ ${#missing[@]} -gt 0 ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]; then
  $SUDO apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

EXTRAS=${DAMA_EXTRAS:-}
stamp="$VENV/.dama-installed${EXTRAS:+-${EXTRAS//,/-}}"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt scripts/setup.sh ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "$TORCH_SPEC"
"$VENV/bin/python" -m pip install -q -e ".[test,logging${EXTRAS:+,$EXTRAS}]"
touch "$stamp"
echo "environment ready: $VENV"
