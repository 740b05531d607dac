#!/usr/bin/env bash
# Run `make` stages in order, stop at the first that fails, and print each stage's wall time:
# the numbers behind the CI budget (.ci/run's limit is 90 minutes; the book aims for 60).
set -uo pipefail
MAKE=${MAKE:-make}
report=()
total=0
for stage in "$@"; do
  start=$(date +%s)
  if ! "$MAKE" --no-print-directory "$stage"; then
    echo "make test: stage '$stage' failed after $(( $(date +%s) - start )) s" >&2
    exit 1
  fi
  seconds=$(( $(date +%s) - start ))
  total=$(( total + seconds ))
  report+=("$(printf '  %-12s %5d s' "$stage" "$seconds")")
done
echo "make test: time per stage"
printf '%s\n' "${report[@]}"
printf '  %-12s %5d s\n' "total" "$total"
