"""The `t5x.train` command line a launcher hands to the workers.

A launcher takes its own flags, any number of `--gin.NAME=VALUE` (and
`--gin_bindings=...`) overrides, and, after `--`, other `t5x.train` flags.
The overrides and the flags after `--` reach `t5x.train` exactly as the
launcher received them: they are kept as a list and never re-joined into a
string here.

Gin files are checked where `t5x.train` will look for them: gin tries a path
as given (relative to the working directory) first, then under each search
path. A file the workers have (in the installed `ankh3_tasks` package or in
T5X) is used from there; a file only this machine has is copied to the
workers (`GinFile.ship`).
"""

import argparse
import ast
import dataclasses
import importlib.util
import os
import re
from typing import Iterable, Sequence

_GIN_OVERRIDE = "--gin."
_GIN_BINDINGS = "--gin_bindings="
_INCLUDE = re.compile(r"""^[ \t]*include[ \t]+(['"])(.+?)\1""", re.MULTILINE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def split_args(
    argv: Sequence[str],
) -> tuple[list[str], list[str], list[str]]:
  """Separates launcher flags, gin overrides and other `t5x.train` flags.

  Args:
    argv: the launcher's arguments, without the program name.

  Returns:
    (launcher flags, gin overrides, flags after `--`), each in the order
    given. Gin overrides are the arguments before `--` that start with
    `--gin.` or `--gin_bindings=`.

  Raises:
    ValueError: an override has no `=`, `--gin_search_paths` is given
      (the launcher sets it), or `--dry_run` comes after `--` (where it
      would go to `t5x.train`).
  """
  argv = list(argv)
  tail: list[str] = []
  if "--" in argv:
    split = argv.index("--")
    argv, tail = argv[:split], argv[split + 1 :]
  launcher, overrides = [], []
  for arg in argv:
    if arg.startswith(_GIN_OVERRIDE) or arg.startswith(_GIN_BINDINGS):
      if arg.startswith(_GIN_OVERRIDE) and "=" not in arg:
        raise ValueError(
            f"gin override {arg!r} has no value: write --gin.NAME=VALUE"
        )
      overrides.append(arg)
    else:
      launcher.append(arg)
  if "--dry_run" in tail:
    raise ValueError(
        "--dry_run after -- would go to t5x.train (and the launcher would"
        " act for real): put it before --"
    )
  for arg in launcher + tail:
    if arg.startswith("--gin_search_paths"):
      raise ValueError(
          "the launcher sets --gin_search_paths itself (the installed"
          " ankh3_tasks package); pass gin files by --gin_file instead"
      )
  return launcher, overrides, tail


def override_value(overrides: Iterable[str], name: str) -> str | None:
  """The raw gin value the overrides give macro `name` last, or None."""
  value = None
  prefix = f"{_GIN_OVERRIDE}{name}="
  binding = re.compile(rf"^\s*{re.escape(name)}\s*=(.*)$", re.DOTALL)
  for arg in overrides:
    if arg.startswith(prefix):
      value = arg[len(prefix) :]
    elif arg.startswith(_GIN_BINDINGS):
      match = binding.match(arg[len(_GIN_BINDINGS) :])
      if match:
        value = match.group(1)
  return value


def model_dir(overrides: Iterable[str]) -> str:
  """Returns the MODEL_DIR the overrides set, as a Python string.

  Args:
    overrides: `--gin.NAME=VALUE` arguments.

  Returns:
    The directory, e.g. `gs://b/run` for `--gin.MODEL_DIR="gs://b/run"`.

  Raises:
    ValueError: MODEL_DIR is not set, or not a quoted gin string.
  """
  raw = override_value(overrides, "MODEL_DIR")
  example = '--gin.MODEL_DIR=\\"gs://BUCKET/DIR\\"'
  if raw is None:
    raise ValueError(f"set the run's directory: {example}")
  try:
    value = ast.literal_eval(raw.strip())
  except (ValueError, SyntaxError):
    value = None
  if not isinstance(value, str):
    raise ValueError(
        f"MODEL_DIR={raw} is not a quoted gin string; in the shell write"
        f" {example} (gin needs the quotes)"
    )
  return value


def gin_macro(
    name: str,
    gin_files: Sequence[str],
    overrides: Sequence[str],
    *,
    cwd: str,
    roots: Sequence[tuple[str, str]],
) -> str | None:
  """The raw value a run gives gin macro `name`, as far as can be read here.

  The last override wins; without one, the last `NAME = VALUE` line of the
  gin files, read in order with their includes followed where they stand (as
  gin reads them). Files found neither as given nor under `roots` are
  skipped. Values that span lines are not read.

  Args:
    name: the macro, e.g. `TRAIN_STEPS`.
    gin_files: `--gin_file` values, in order.
    overrides: `--gin.NAME=VALUE` and `--gin_bindings=...` arguments.
    cwd: the directory relative paths are taken from.
    roots: (label, directory) search paths, e.g. `search_roots()`.

  Returns:
    The value's text (e.g. `4000000`), or None where nothing sets it.
  """
  value = override_value(overrides, name)
  if value is not None:
    return value.strip()
  assignment = re.compile(
      rf"^[ \t]*{re.escape(name)}[ \t]*=[ \t]*([^#\n]*)", re.MULTILINE
  )
  found: list[str | None] = [None]
  seen: set[str] = set()

  def visit(path: str) -> None:
    candidates = [path if os.path.isabs(path) else os.path.join(cwd, path)]
    if not os.path.isabs(path):
      candidates += [os.path.join(root, path) for _, root in roots]
    local = next((c for c in candidates if os.path.isfile(c)), None)
    if local is None or local in seen:
      return
    seen.add(local)
    with open(local) as f:
      text = f.read()
    events = [
        (m.start(), "include", m.group(2)) for m in _INCLUDE.finditer(text)
    ]
    events += [
        (m.start(), "set", m.group(1).strip())
        for m in assignment.finditer(text)
    ]
    for _, kind, what in sorted(events):
      if kind == "include":
        visit(what)
      else:
        found[0] = what

  for path in gin_files:
    visit(path)
  return found[0]


def check_model_dir(directory: str, *, reason: str | None) -> None:
  """Raises ValueError if `directory` must be on GCS and is not.

  Args:
    directory: the run's MODEL_DIR.
    reason: why it must be on GCS (for the message), or None if it need not.
  """
  if reason and not directory.startswith("gs://"):
    raise ValueError(
        f"MODEL_DIR {directory!r} is not on GCS: {reason}, so it must be a"
        ' gs:// path, e.g. --gin.MODEL_DIR=\\"gs://BUCKET/ankh3_large\\"'
    )


def train_options(gin_file_help: str, env_help: str) -> argparse.ArgumentParser:
  """The options every launcher takes for the run: `--gin_file` and `--env`.

  A parent parser (`argparse.ArgumentParser(parents=[...])`); `--env` values
  are read with `parse_env`.

  Args:
    gin_file_help: the help of `--gin_file` (where the path is resolved).
    env_help: the help of `--env` (which processes get the variable).
  """
  parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
  parser.add_argument(
      "--gin_file", action="append", default=[], help=gin_file_help
  )
  parser.add_argument(
      "--env",
      action="append",
      default=[],
      metavar="NAME=VALUE",
      help=env_help,
  )
  return parser


def parse_env(assignments: Iterable[str]) -> list[tuple[str, str]]:
  """Parses `NAME=VALUE` assignments (values kept exactly).

  Raises:
    ValueError: an assignment has no `=` or an invalid name.
  """
  env = []
  for assignment in assignments:
    name, sep, value = assignment.partition("=")
    if not sep or not _ENV_NAME.match(name):
      raise ValueError(
          f"--env {assignment!r} is not NAME=VALUE with NAME a shell"
          " variable name"
      )
    env.append((name, value))
  return env


def t5x_argv(
    gin_files: Sequence[str], overrides: Sequence[str], extra: Sequence[str]
) -> list[str]:
  """The `t5x.train` arguments, after the launcher's `--gin_search_paths`."""
  return [f"--gin_file={path}" for path in gin_files] + [*overrides, *extra]


@dataclasses.dataclass(frozen=True)
class GinFile:
  """A gin file of a run and where it was found on this machine.

  Attributes:
    path: the path as `t5x.train` receives it (as given, or as included).
    local: the file on this machine.
    ship: True if the workers do not have it (not in the ankh3_tasks
      package or T5X, or different from the file there).
  """

  path: str
  local: str
  ship: bool


def search_roots() -> list[tuple[str, str]]:
  """(label, directory) of the gin search paths the workers also have.

  The ankh3_tasks package directory (`python -m ankh3_tasks.gin_search_path`)
  and the directory above the `t5x` package (T5X's default). Found without
  importing either package.
  """
  roots = []
  for name, label, up in (
      ("ankh3_tasks", "the ankh3_tasks package", False),
      ("t5x", "T5X", True),
  ):
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
      continue
    directory = list(spec.submodule_search_locations)[0]
    roots.append((label, os.path.dirname(directory) if up else directory))
  return roots


def _same_bytes(a: str, b: str) -> bool:
  with open(a, "rb") as fa, open(b, "rb") as fb:
    return fa.read() == fb.read()


def shippable(path: str) -> bool:
  """True if `path` is relative, not empty, and has no `..` component."""
  parts = os.path.normpath(path).split(os.sep)
  return bool(path.strip()) and not os.path.isabs(path) and ".." not in parts


def resolve_gin_files(
    paths: Sequence[str],
    *,
    cwd: str,
    roots: Sequence[tuple[str, str]],
) -> list[GinFile]:
  """Finds each gin file (and what files to be shipped include) as gin would.

  Args:
    paths: `--gin_file` values, as given.
    cwd: the directory relative paths are taken from.
    roots: (label, directory) search paths, e.g. `search_roots()`.

  Returns:
    The files given and, for each file to ship, the files it includes (gin
    resolves includes like `--gin_file`s), each once.

  Raises:
    ValueError: a file is found nowhere (the message lists where it looked),
      or a file to ship is given by an absolute path or one with `..`.
  """
  found: list[GinFile] = []
  seen: set[str] = set()
  t5x_present = any(label == "T5X" for label, _ in roots)

  def visit(path: str, included_by: str | None) -> None:
    if path in seen:
      return
    seen.add(path)
    here = path if os.path.isabs(path) else os.path.join(cwd, path)
    local = here if os.path.isfile(here) else None
    looked = [here]
    packaged = None
    if not os.path.isabs(path):
      for _, root in roots:
        candidate = os.path.join(root, path)
        looked.append(candidate)
        if os.path.isfile(candidate):
          packaged = candidate
          break
    if packaged and (local is None or _same_bytes(local, packaged)):
      found.append(GinFile(path, packaged, ship=False))
      return
    if local is None:
      if path.startswith("t5x/") and not t5x_present:
        # T5X is not installed here; the workers have it.
        found.append(GinFile(path, path, ship=False))
        return
      where = f" (included by {included_by})" if included_by else ""
      raise ValueError(
          f"gin file {path!r}{where} not found; looked in: " + ", ".join(looked)
      )
    if not shippable(path):
      raise ValueError(
          f"gin file {path!r} is not in the ankh3_tasks package or T5X, so"
          " the launcher copies it into the run's directory on the workers,"
          " which needs a path relative to the current directory without"
          " '..': cd to its directory, or put it under gin/ and re-run setup"
      )
    found.append(GinFile(path, local, ship=True))
    with open(local) as f:
      text = f.read()
    for match in _INCLUDE.finditer(text):
      visit(match.group(2), path)

  for path in paths:
    visit(path, None)
  return found
