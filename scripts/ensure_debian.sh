#!/usr/bin/env bash
# Installs the Debian packages named on the command line when their commands are missing.
# Usage: scripts/ensure_debian.sh PACKAGE:COMMAND [PACKAGE:COMMAND ...]
set -euo pipefail
missing=()
for pair in "$@"; do
    package=${pair%%:*}
    command=${pair#*:}
    command -v "$command" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
    echo "setup: missing Debian packages: ${missing[*]}. Install them with: apt-get install -y ${missing[*]}" >&2
    exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "setup: installing Debian packages: ${missing[*]}"
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
    echo "setup: could not install ${missing[*]} with apt-get. Install them by hand and run the command again." >&2
    exit 1
fi
