#!/usr/bin/env bash
# Sets up everything in the active Python environment: the package with its
# test tools, then T5X (with airio and jestimator) at the tested commits, all
# at the tested versions (requirements/constraints.txt).
#
# usage: tools/setup.sh [--checkouts DIR] [--no-t5x] [--dry-run]
#
#   (no option)       T5X from git (github.com); where the git host cannot be
#                     reached, says so and goes on without T5X: the tests
#                     that need it then skip, saying why
#   --checkouts DIR   T5X from local checkouts DIR/t5x, DIR/airio,
#                     DIR/jestimator (tools/install_t5x.sh)
#   --no-t5x          the package and its test tools only
#   --dry-run         print the commands instead of running them
set -euo pipefail

usage() { sed -n 's/^# usage: /usage: /p' "$0" >&2; exit "${1:-2}"; }

t5x_flags=()
no_t5x=""
dry_run=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --checkouts) [[ $# -ge 2 ]] || usage; t5x_flags+=(--checkouts "$2"); shift 2 ;;
    --checkouts=*) t5x_flags+=(--checkouts "${1#*=}"); shift ;;
    --no-t5x) no_t5x=1; shift ;;
    --dry-run) dry_run=1; t5x_flags+=(--dry-run); shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
done

# Checkout paths are relative to where the script was called from.
here="$(pwd)"
cd "$(dirname "$0")/.."
if [[ ${#t5x_flags[@]} -gt 0 && "${t5x_flags[0]}" == --checkouts ]]; then
  case "${t5x_flags[1]}" in
    /*) ;;
    *) t5x_flags[1]="$here/${t5x_flags[1]}" ;;
  esac
fi

run() {
  if [[ -n "$dry_run" ]]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

run python -m pip install -c requirements/constraints.txt -e ".[test]"
if [[ -n "$no_t5x" ]]; then
  exit 0
fi
# From git, a machine without access to the git host fails at once or hangs
# on the connection: either way it is reported, and the rest stands.
if [[ ${#t5x_flags[@]} -eq 0 || "${t5x_flags[0]}" == --dry-run ]]; then
  if ! run timeout "${ANKH3_GIT_TIMEOUT:-300}" \
      bash tools/install_t5x.sh "${t5x_flags[@]}"; then
    echo "warning: T5X could not be installed from git (no access to the" \
      "git host?). The package works without it; the tests that need T5X" \
      "will skip. Later: bash tools/install_t5x.sh [--checkouts DIR]" >&2
  fi
else
  run bash tools/install_t5x.sh "${t5x_flags[@]}"
fi
