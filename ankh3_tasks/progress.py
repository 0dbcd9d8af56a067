"""Progress bars that read well in a terminal and in a log (tqdm).

On a terminal a tqdm bar redraws its line in place; written to a file or a
pipe, each redraw would add a carriage return and a copy of the line (a
downstream run's log grew by 648 KB of them). `bar_options()` gives tqdm a
stream that turns each redraw into one whole line, written at most every 30
seconds, where stderr is not a terminal.
"""

import sys
from typing import Any


class LogLines:
  """A stream for tqdm in a log: each redraw one line, no carriage returns."""

  def __init__(self, stream):
    self._stream = stream

  def write(self, text: str) -> None:
    text = text.replace("\r", "").strip()
    if text:
      self._stream.write(text + "\n")

  def flush(self) -> None:
    self._stream.flush()


def bar_options(stream=None) -> dict[str, Any]:
  """tqdm's `file` and `mininterval` for `stream` (default: stderr)."""
  stream = sys.stderr if stream is None else stream
  if stream.isatty():
    return {"file": stream, "mininterval": 0.5}
  return {"file": LogLines(stream), "mininterval": 30}
