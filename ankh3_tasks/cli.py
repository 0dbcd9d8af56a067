"""What the package's command lines share: one way to fail.

  if __name__ == "__main__":
    sys.exit(cli.run(main))

A mistake of the user's (a missing file, a wrong gin file for a checkpoint,
bad ids) ends the command with one line, `error: ...`, and exit status 1,
not a traceback; a bug still shows its traceback. `ANKH3_TRACEBACK=1` shows
the traceback of every error.
"""

from collections.abc import Callable, Sequence
import os
import sys
from typing import Optional

TRACEBACK_ENV = "ANKH3_TRACEBACK"


def _is_user_error(error: BaseException) -> bool:
  if isinstance(error, (ValueError, OSError, EOFError)):
    return True
  # Reading files (TensorFlow) and restoring parameters of another shape
  # (flax): checked by class, without importing either here.
  for module, name in (
      ("tensorflow", "errors"),
      ("flax", "errors"),
  ):
    package = sys.modules.get(module)
    errors = getattr(package, name, None) if package else None
    base = getattr(errors, "OpError", None) or getattr(
        errors, "FlaxError", None
    )
    if base is not None and isinstance(error, base):
      return True
  return False


def _message(error: BaseException) -> str:
  # TensorFlow's errors carry their message apart from the op details.
  return (getattr(error, "message", None) or str(error)).strip()


def run(
    main: Callable[[Optional[Sequence[str]]], int],
    argv: Optional[Sequence[str]] = None,
) -> int:
  """Runs `main(argv)`; a user's mistake becomes `error: ...` and status 1."""
  try:
    return main(argv)
  except Exception as e:  # pylint: disable=broad-except
    if os.environ.get(TRACEBACK_ENV) or not _is_user_error(e):
      raise
    print(f"error: {_message(e)}", file=sys.stderr)
    return 1
