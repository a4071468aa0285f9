#!/usr/bin/env bash
# Creates .venv (CPython 3.11) with kd, its test extras and every dependency, direct and transitive, at the exact
# version in requirements.lock. Reinstalls whenever requirements.lock or pyproject.toml changed since the last
# install (a stamp inside .venv), then checks that torch and torchaudio's compiled code load and run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "setup-env: requirements.lock is resolved for CPython 3.11; set PYTHON=/path/to/python3.11" >&2
    exit 2
  fi
  "$PYTHON" -m venv .venv
fi
stamp=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.kd-lock-stamp 2>/dev/null)" != "$stamp" ]; then
  start=$SECONDS
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c requirements.lock pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[dev]"
  .venv/bin/python -m pip check
  echo "$stamp" > .venv/.kd-lock-stamp
  echo "setup-env: installed from requirements.lock in $((SECONDS - start)) s ($(du -sh .venv | cut -f1) in .venv)"
fi
.venv/bin/python -c 'import sys; from kd.entry import broken_runtime; r = broken_runtime(); r and sys.exit(f"setup-env: {r}")'
