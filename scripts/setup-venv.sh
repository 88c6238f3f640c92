#!/usr/bin/env bash
# Creates .venv beside the checkout (once) and installs nbops editable with the given extras, e.g. "test,bench".
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
