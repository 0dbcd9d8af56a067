"""Where this package's gin files are, for `t5x.train --gin_search_paths`.

The gin tree ships inside the package (`ankh3_tasks/gin/`, the repository's
`gin/`), and the files include one another as `gin/models/...`, so the search
path is the directory that holds `gin/`:

  python -m t5x.train \
    --gin_search_paths="$(python -m ankh3_tasks.gin_search_path)" \
    --gin_file=gin/experiments/ankh3_tiny_sample.gin \
    --gin.MODEL_DIR=\"/tmp/ankh3_tiny\"

From the root of a checkout, T5X's default search path (`.`) finds them too.
"""

import os
import sys


def gin_search_path() -> str:
  """Returns the directory holding this package's `gin/` tree."""
  return os.path.dirname(os.path.abspath(__file__))


def main() -> int:
  print(gin_search_path())
  return 0


if __name__ == "__main__":
  sys.exit(main())
