#!/usr/bin/env bash
# Creates or repairs .venv-colab: Colab's own package versions (colab-versions.txt), then the book's
# utils installed the way a lesson's setup cell installs it in Colab (pip resolves utils' declared
# dependencies against what is already there). Fails if that install would replace torch or numpy.
# Idempotent, like setup_env.sh: a stamp records a complete install.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-colab
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.mmbook-colab-installed"
WANT=$(cat colab-versions.txt pyproject.toml setup.py | sha256sum | cut -d' ' -f1)

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ] || ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    if ! "$VENV/bin/python" -c "pass" 2>/dev/null; then
        echo "colab-env: creating $VENV with $($PYTHON --version)"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    echo "colab-env: installing Colab's package versions into $VENV (a few minutes the first time)"
    rm -f "$STAMP"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    if ! "$VENV/bin/python" -m pip install --quiet -r colab-versions.txt; then
        echo "colab-env: installing colab-versions.txt failed (see above). Check the network to the package" >&2
        echo "           index, or whether a listed version exists for $($PYTHON --version)." >&2
        exit 1
    fi
    echo "$WANT" > "$STAMP"
fi

# utils as the setup cell installs it: with its declared dependencies, from this working tree.
before=$("$VENV/bin/python" -m pip freeze | grep -iE '^(torch|torchvision|torchaudio|numpy)==' | sort)
"$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps "mmbook-utils @ file://$PWD" >/dev/null
"$VENV/bin/python" -m pip install --quiet "mmbook-utils @ file://$PWD"
after=$("$VENV/bin/python" -m pip freeze | grep -iE '^(torch|torchvision|torchaudio|numpy)==' | sort)
if [ "$before" != "$after" ]; then
    echo "colab-env: installing utils changed torch or numpy, which the setup cell must never do:" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
    exit 1
fi
echo "colab-env: ready ($("$VENV/bin/python" -c 'import torch, transformers, diffusers; print("torch", torch.__version__, "| transformers", transformers.__version__, "| diffusers", diffusers.__version__)'))"
