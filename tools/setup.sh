#!/usr/bin/env bash
# Sets up everything in the active Python environment: the package with its
# test tools, then T5X (with airio and jestimator) at the tested commits, all
# at the tested versions (requirements/constraints.txt).
#
# usage: tools/setup.sh [--checkouts DIR [--editable]] [--hf] [--libtpu]
#                       [--no-t5x] [--dry-run]
#
#   (no option)       T5X from git (github.com); where the git host cannot be
#                     reached, says so and goes on without T5X: the tests
#                     that need it then skip, saying why
#   --checkouts DIR   T5X from local trees DIR/t5x, DIR/airio,
#                     DIR/jestimator, which are only read
#                     (tools/install_t5x.sh)
#   --editable        with --checkouts: install those trees in place, editable
#   --hf              also the `hf` extra (CPU PyTorch and transformers), for
#                     the Hugging Face converter and its tests
#   --libtpu          also libtpu (about 210 MB), for python -m
#                     ankh3_tasks.compile_check and its tests, into the
#                     environment's opt/libtpu: off the import path, so JAX
#                     elsewhere never tries it
#   --no-t5x          the package and its test tools only
#   --dry-run         print the commands instead of running them
set -euo pipefail

usage() { sed -n '/^# usage: /,/^#$/{/^#$/d;s/^# //p}' "$0" >&2; exit "${1:-2}"; }

checkouts=""
editable=""
no_t5x=""
extras="test"
libtpu=""
dry_run=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --checkouts) [[ $# -ge 2 ]] || usage; checkouts="$2"; shift 2 ;;
    --checkouts=*) checkouts="${1#*=}"; shift ;;
    --editable) editable=1; shift ;;
    --hf) extras="test,hf"; shift ;;
    --libtpu) libtpu=1; shift ;;
    --no-t5x) no_t5x=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
done
if [[ -n "$editable" && -z "$checkouts" ]]; then
  echo "error: --editable needs --checkouts DIR" >&2
  usage
fi

# Checkout paths are relative to where the script was called from.
t5x_flags=()
if [[ -n "$checkouts" ]]; then
  case "$checkouts" in
    /*) ;;
    *) checkouts="$(pwd)/$checkouts" ;;
  esac
  t5x_flags+=(--checkouts "$checkouts")
fi
[[ -z "$editable" ]] || t5x_flags+=(--editable)
[[ -z "$dry_run" ]] || t5x_flags+=(--dry-run)
cd "$(dirname "$0")/.."

run() {
  if [[ -n "$dry_run" ]]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

run python -m pip install -c requirements/constraints.txt -e ".[$extras]"
if [[ -n "$libtpu" ]]; then
  # The build jax[tpu]==0.10.2 pins.
  prefix="$(python -c 'import sys; print(sys.prefix)')"
  run python -m pip install --no-deps --upgrade \
    --target "$prefix/opt/libtpu" "libtpu==0.0.42.*"
fi
if [[ -n "$no_t5x" ]]; then
  exit 0
fi
# With --dry-run, install_t5x.sh prints its own commands.
if [[ -n "$dry_run" ]]; then
  bash tools/install_t5x.sh "${t5x_flags[@]}"
  exit 0
fi
# From git, a machine without access to the git host fails at once or hangs
# on the connection: either way it is reported, and the rest stands.
if [[ -z "$checkouts" ]]; then
  if ! run timeout "${ANKH3_GIT_TIMEOUT:-300}" \
      bash tools/install_t5x.sh "${t5x_flags[@]}"; then
    echo "warning: T5X could not be installed from git (no access to the" \
      "git host?). The package works without it; the tests that need T5X" \
      "will skip. Later: bash tools/install_t5x.sh [--checkouts DIR]" >&2
  fi
else
  run bash tools/install_t5x.sh "${t5x_flags[@]}"
fi
