#!/usr/bin/env bash
# Creates or repairs .venv and installs the pinned environment plus the `utils` package.
# Idempotent: a stamp written only after a complete install tells later runs there is nothing to do,
# so an interrupted install is simply redone on the next run.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.mmbook-installed"
WANT=$(cat requirements.txt pyproject.toml setup.py | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$VENV/bin/python" -c "import utils, torch" 2>/dev/null; then
    exit 0
fi

if ! "$VENV/bin/python" -c "pass" 2>/dev/null; then
    if ! command -v "$PYTHON" >/dev/null; then
        echo "setup: no '$PYTHON' found. Install Python 3.10 or newer, or run: make PYTHON=/path/to/python3 ..." >&2
        exit 1
    fi
    echo "setup: creating $VENV with $($PYTHON --version)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi

echo "setup: installing the pinned environment into $VENV (a few minutes the first time)"
rm -f "$STAMP"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if ! "$VENV/bin/python" -m pip install --quiet -r requirements.txt; then
    echo "setup: installing requirements.txt failed (see above). Check the network to the package index," >&2
    echo "       then run the same make command again: the install resumes where it stopped." >&2
    exit 1
fi
"$VENV/bin/python" -m pip install --quiet --no-deps -e . >"$VENV/.utils-install.log" 2>&1 || { cat "$VENV/.utils-install.log" >&2; exit 1; }
echo "$WANT" > "$STAMP"
echo "setup: environment ready ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
