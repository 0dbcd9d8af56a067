#!/usr/bin/env bash
# Installs T5X (with airio and jestimator) at the pinned commits into the
# active Python environment, with setup.cfg's `t5x` extra at the tested
# versions (requirements/constraints.txt).
#
# usage: tools/install_t5x.sh [--checkouts DIR] [--dry-run]
#
#   (no option)       from git (requirements/t5x-git.txt); needs github.com
#   --checkouts DIR   from local checkouts DIR/t5x, DIR/airio, DIR/jestimator
#                     (for machines without access to the git host); a
#                     checkout at another commit is reported
#   --dry-run         print the pip commands instead of running them
set -euo pipefail

usage() { sed -n 's/^# usage: /usage: /p' "$0" >&2; exit "${1:-2}"; }

checkouts=""
dry_run=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --checkouts) [[ $# -ge 2 ]] || usage; checkouts="$2"; shift 2 ;;
    --checkouts=*) checkouts="${1#*=}"; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
done

if [[ -n "$checkouts" ]]; then
  # Relative to where the script was called from, not to the repository.
  absolute="$(cd "$checkouts" 2>/dev/null && pwd)" || {
    echo "error: no such directory: $checkouts" >&2; exit 1; }
  checkouts="$absolute"
fi
cd "$(dirname "$0")/.."

run() {
  if [[ -n "$dry_run" ]]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

run python -m pip install -c requirements/constraints.txt -e ".[t5x]"
if [[ -z "$checkouts" ]]; then
  run python -m pip install --no-deps -r requirements/t5x-git.txt
  exit 0
fi

targets=()
pattern='s/^\([a-z0-9]*\) @ \(git+.*\)$/\1 \2/p'
while read -r name url; do
  dir="$checkouts/$name"
  want="${url##*@}"
  if [[ ! -f "$dir/setup.py" && ! -f "$dir/pyproject.toml" ]]; then
    echo "error: $dir is not a checkout of $name (no setup.py or" \
      "pyproject.toml); expected $name at commit $want" >&2
    exit 1
  fi
  have=""
  if [[ -e "$dir/.git" ]]; then
    have="$(git -C "$dir" rev-parse HEAD 2>/dev/null || true)"
  fi
  if [[ -z "$have" ]]; then
    echo "warning: cannot tell the commit of $dir; tested with $want" >&2
  elif [[ "$have" != "$want" ]]; then
    echo "warning: $dir is at $have; tested with $want" >&2
  fi
  targets+=(-e "$dir")
done < <(sed -n "$pattern" requirements/t5x-git.txt)
run python -m pip install --no-deps "${targets[@]}"
