r"""Pseudo-likelihood speed on CPU: `ankh3_tasks.score` vs the Ankh library.

  python benchmarks/score_speed.py --checkpoint=MODEL_DIR/checkpoint_300 \
    --gin_file=gin/models/ankh3_tiny.gin [--hf_dir=HF_DIR] \
    [--venv=.client-venvs/transformers-4.57.6] [--proteins=16] \
    [--min_length=50] [--max_length=250] [--cores=1,all] [--repeats=2]

Scores the same random proteins (seeded) with both, each in a process of
its own, pinned to one CPU core (`--cores=1`) or left on all of them
(`all`):

- `python -m ankh3_tasks.score` on the T5X checkpoint (its own timer:
  scoring, compiling included, reading the checkpoint not);
- the official Ankh library's `compute_pseudo_likelihood` (agemagician/Ankh,
  in a side environment made by `tools/client_matrix.py build`) on the same
  model exported with `python -m ankh3_tasks.convert t5x-to-hf` (written to
  a temporary directory unless `--hf_dir` is given), through
  `tools/client_matrix.py ankh-likelihood` (its timer: the library's call,
  loading the model included, a fraction of a second for the tiny model).

Printed per setting and repeat (the two alternate, so that other load on
the machine falls on both): scored residues per second of each, the ratio,
and the largest difference of their per-protein pseudo-likelihoods (exp of
the mean log-probability, the library's scale).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LETTERS = "LAGSVERTIDPKNFQYHMCW"


def _pin(cores: str):
  """preexec_fn pinning a child to CPU 0, or None for all CPUs."""
  if cores == "all":
    return None
  return lambda: os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def _run(argv, cores, **kwargs):
  start = time.perf_counter()
  run = subprocess.run(
      argv,
      capture_output=True,
      text=True,
      cwd=REPO,
      preexec_fn=_pin(cores),
      check=False,
      **kwargs,
  )
  if run.returncode:
    sys.exit(f"{argv[:3]} failed:\n{run.stdout[-3000:]}{run.stderr[-3000:]}")
  return run, time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True)
  parser.add_argument("--gin_file", required=True)
  parser.add_argument("--hf_dir", help="the export (made when not given)")
  parser.add_argument(
      "--venv",
      default=os.path.join(
          os.environ.get("ANKH3_CLIENT_VENVS")
          or os.path.join(REPO, ".client-venvs"),
          "transformers-4.57.6",
      ),
      help="side environment with the Ankh library",
  )
  parser.add_argument("--proteins", type=int, default=16)
  parser.add_argument("--min_length", type=int, default=50)
  parser.add_argument("--max_length", type=int, default=250)
  parser.add_argument("--cores", default="1,all")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument(
      "--score_flag",
      action="append",
      default=[],
      help="extra flag for ankh3_tasks.score (repeatable)",
  )
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  lengths = rng.integers(args.min_length, args.max_length + 1, args.proteins)
  proteins = ["".join(rng.choice(list(LETTERS), n)) for n in lengths]
  residues = int(sum(lengths))
  with tempfile.TemporaryDirectory() as tmp:
    fasta = os.path.join(tmp, "proteins.fasta")
    with open(fasta, "w") as f:
      for i, p in enumerate(proteins):
        f.write(f">p{i}\n{p}\n")
    hf_dir = args.hf_dir
    if not hf_dir:
      hf_dir = os.path.join(tmp, "hf")
      _run(
          [
              sys.executable,
              "-m",
              "ankh3_tasks.convert",
              "t5x-to-hf",
              f"--checkpoint={args.checkpoint}",
              f"--gin_file={args.gin_file}",
              f"--output={hf_dir}",
          ],
          "all",
      )
    print(
        f"{args.proteins} random proteins of {args.min_length}-"
        f"{args.max_length} residues ({residues} residues), "
        f"{os.cpu_count()} CPUs here"
    )
    print(
        "| cores | ankh3_tasks.score residues/s | Ankh library residues/s |"
        " ratio | max difference |"
    )
    print("|---|---|---|---|---|")
    for cores in [
        c for c in args.cores.split(",") for _ in range(args.repeats)
    ]:
      out = os.path.join(tmp, "scores.json")
      run, _ = _run(
          [
              sys.executable,
              "-m",
              "ankh3_tasks.score",
              f"--checkpoint={args.checkpoint}",
              f"--gin_file={args.gin_file}",
              f"--input={fasta}",
              f"--output={out}",
              *args.score_flag,
          ],
          cores,
      )
      ours_s = float(re.search(r"in ([0-9.]+) s into", run.stdout).group(1))
      with open(out) as f:
        ours = {
            r["id"]: np.exp(r["pseudo_log_likelihood_per_residue"])
            for r in json.load(f)
        }
      run, _ = _run(
          [
              sys.executable,
              os.path.join(REPO, "tools", "client_matrix.py"),
              "ankh-likelihood",
              f"--venv={args.venv}",
              f"--model_dir={hf_dir}",
              f"--fasta={fasta}",
          ],
          cores,
      )
      client = json.loads(run.stdout)
      theirs = {p["id"]: p["pseudo_likelihood"] for p in client["proteins"]}
      gap = max(abs(ours[k] - theirs[k]) for k in theirs)
      print(
          f"| {cores} | {residues / ours_s:,.0f} ({ours_s:.1f} s) | "
          f"{residues / client['wall_s']:,.0f} ({client['wall_s']:.1f} s) | "
          f"{client['wall_s'] / ours_s:.2f} | {gap:.1e} |",
          flush=True,
      )
    print(f"transformers {client['transformers']}, torch {client['torch']}")


if __name__ == "__main__":
  main()
