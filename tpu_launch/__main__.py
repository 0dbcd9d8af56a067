"""`python -m tpu_launch`: see tpu_launch/cli.py and tpu_launch/README.md."""

import sys

from tpu_launch import cli

if __name__ == "__main__":
  sys.exit(cli.main())
