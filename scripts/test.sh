#!/usr/bin/env bash
# Set up a virtual environment (if needed), lint the repository (ruff; a finding fails the script) and run
# the test suite. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,nir,events,neurobench]"
.venv/bin/python -m ruff check .
exec .venv/bin/python -m pytest -q "$@"
