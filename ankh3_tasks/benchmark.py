"""The old name of `ankh3_tasks.downstream`, kept for its command line.

The downstream benchmark (frozen embeddings, ConvBERT heads, the paper's
Table 5) is `ankh3_tasks.downstream`; the speed scripts are `benchmarks/`.
`python -m ankh3_tasks.benchmark FLAGS` runs `python -m ankh3_tasks.downstream
FLAGS`, saying so on stderr. Import `ankh3_tasks.downstream` in new code.
"""

import runpy
import sys

if __name__ == "__main__":
  print(
      "note: ankh3_tasks.benchmark is the old name of "
      "ankh3_tasks.downstream; running python -m ankh3_tasks.downstream.",
      file=sys.stderr,
  )
  runpy.run_module(
      "ankh3_tasks.downstream", run_name="__main__", alter_sys=True
  )
