#!/usr/bin/env bash
# Runs the test suite on the CPU. Real data is read from ../shared/data (override with KD_SHARED_DATA).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
export KD_SHARED_DATA=${KD_SHARED_DATA:-$(cd .. && pwd)/shared/data}
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
