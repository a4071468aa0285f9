#!/usr/bin/env bash
# Rewrites constraints.txt from a resolution in a new, empty virtualenv (CPython 3.11, this platform).
#   bash scripts/refresh-lock.sh            keep every current pin, resolve only what pyproject.toml added
#   bash scripts/refresh-lock.sh --upgrade  resolve every dependency anew at its newest allowed release
# Then run `bash scripts/test.sh` (it reinstalls .venv from the new lock) and commit constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
constraints=(-c constraints.txt)
if [ "${1:-}" = "--upgrade" ] || [ ! -f constraints.txt ]; then
  constraints=()
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check "${constraints[@]}" --upgrade pip
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check "${constraints[@]}" -e ".[dev]"
"$tmp/venv/bin/python" -m pip check
# The lock must hold a torch/torchaudio pair whose compiled code loads together, not only one that pip accepts.
"$tmp/venv/bin/python" -c 'import sys; from kd.entry import broken_runtime; r = broken_runtime(); r and sys.exit(r)'
{
  echo "# Every dependency of kd (with the dev extra) at an exact version: a pip constraints file, used by"
  echo "# scripts/setup-env.sh as 'pip install -c constraints.txt -e .[dev]'. Resolved for CPython 3.11 on"
  echo "# $(uname -s) $(uname -m) by scripts/refresh-lock.sh on $(date -u +%Y-%m-%d); do not edit by hand."
  "$tmp/venv/bin/python" -m pip freeze --all --exclude-editable | grep -v -i '^kd[= @]'
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "refresh-lock: wrote constraints.txt ($(grep -vc '^#' constraints.txt) pins); now run: bash scripts/test.sh"
