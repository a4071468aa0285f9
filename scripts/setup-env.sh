#!/usr/bin/env bash
# Creates .venv (CPython 3.11) with kd, its test extras and every dependency, direct and transitive, at the exact
# version in constraints.txt. Reinstalls whenever constraints.txt or pyproject.toml changed since the last
# install (a stamp inside .venv), then checks that torch and torchaudio's compiled code load and run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "setup-env: constraints.txt is resolved for CPython 3.11; set PYTHON=/path/to/python3.11" >&2
    exit 2
  fi
  "$PYTHON" -m venv .venv
fi
stamp=$(cat constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.kd-lock-stamp 2>/dev/null)" != "$stamp" ]; then
  start=$SECONDS
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
  .venv/bin/python -m pip check
  echo "$stamp" > .venv/.kd-lock-stamp
  echo "setup-env: installed from constraints.txt in $((SECONDS - start)) s ($(du -sh .venv | cut -f1) in .venv)"
fi
.venv/bin/python -c 'import sys; from kd.entry import broken_runtime; r = broken_runtime(); r and sys.exit(f"setup-env: {r}")'
