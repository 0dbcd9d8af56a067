#!/usr/bin/env bash
# Installs T5X (with airio and jestimator) at the pinned commits into the
# active Python environment, with setup.cfg's `t5x` extra at the tested
# versions (requirements/constraints.txt).
#
# usage: tools/install_t5x.sh [--checkouts DIR [--editable]] [--dry-run]
#
#   (no option)       from git (requirements/t5x-git.txt); needs github.com
#   --checkouts DIR   from local trees DIR/t5x, DIR/airio, DIR/jestimator (for
#                     machines without access to the git host): git checkouts
#                     or plain copies with a .snapshot-commit file naming
#                     their commit; one at another commit is reported. The
#                     trees are only read: each is copied to a temporary
#                     directory and installed from there, as from git.
#   --editable        with --checkouts: install the trees in place, editable
#                     (pip writes its metadata into them), to work on T5X
#   --dry-run         print the commands instead of running them
set -euo pipefail

usage() { sed -n 's/^# usage: /usage: /p' "$0" >&2; exit "${1:-2}"; }

checkouts=""
editable=""
dry_run=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --checkouts) [[ $# -ge 2 ]] || usage; checkouts="$2"; shift 2 ;;
    --checkouts=*) checkouts="${1#*=}"; shift ;;
    --editable) editable=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
done
if [[ -n "$editable" && -z "$checkouts" ]]; then
  echo "error: --editable needs --checkouts DIR" >&2
  usage
fi

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

# The commit a tree is at: git's HEAD where it is a git checkout, else the
# first word of its .snapshot-commit; empty where neither tells.
commit_of() {
  local dir="$1" have=""
  if [[ -e "$dir/.git" ]]; then
    have="$(git -C "$dir" rev-parse HEAD 2>/dev/null || true)"
  fi
  if [[ -z "$have" && -f "$dir/.snapshot-commit" ]]; then
    read -r have _ < "$dir/.snapshot-commit" || true
  fi
  printf '%s' "$have"
}

run python -m pip install -c requirements/constraints.txt -e ".[t5x]"
if [[ -z "$checkouts" ]]; then
  run python -m pip install --no-deps -r requirements/t5x-git.txt
  exit 0
fi

names=()
pattern='s/^\([a-z0-9]*\) @ \(git+.*\)$/\1 \2/p'
while read -r name url; do
  dir="$checkouts/$name"
  want="${url##*@}"
  if [[ ! -f "$dir/setup.py" && ! -f "$dir/pyproject.toml" ]]; then
    echo "error: $dir is not a checkout of $name (no setup.py or" \
      "pyproject.toml); expected $name at commit $want" >&2
    exit 1
  fi
  have="$(commit_of "$dir")"
  if [[ -z "$have" ]]; then
    echo "warning: cannot tell the commit of $dir (neither git nor a" \
      ".snapshot-commit file); tested with $want" >&2
  elif [[ "$have" != "$want" ]]; then
    echo "warning: $dir is at $have; tested with $want" >&2
  fi
  names+=("$name")
done < <(sed -n "$pattern" requirements/t5x-git.txt)

if [[ -n "$editable" ]]; then
  targets=()
  for name in "${names[@]}"; do targets+=(-e "$checkouts/$name"); done
  run python -m pip install --no-deps "${targets[@]}"
  exit 0
fi

# pip builds in the source tree (build/, *.egg-info): build from copies, so
# a read-only or shared tree stays as it is.
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
targets=()
for name in "${names[@]}"; do
  run cp -R "$checkouts/$name" "$build/$name"
  targets+=("$build/$name")
done
run chmod -R u+w "$build"
run python -m pip install --no-deps "${targets[@]}"
