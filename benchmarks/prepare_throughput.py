r"""Measures `ankh3_tasks.prepare` in proteins per second per core.

  python benchmarks/prepare_throughput.py                  # 1M proteins
  python benchmarks/prepare_throughput.py --proteins 2000000 --workers 8

Generates a gzipped FASTA shaped like the UniRef50 release (UniRef50-style
headers, 60-residue lines, log-normal lengths with UniRef50's mean of about
270 residues; kept in `--work_dir` and reused), then prepares it with the
release's default settings (64 train shards, 16 per evaluation split) in one
process (`--workers 1`: one core) and, if asked, with more write workers.

Prints the two passes apart, since they scale differently: the scan (gunzip,
parse, check, spread over work files) reads one stream on one core; the
write pass (deduplicate, order, write and checksum each shard) runs on
`--workers` processes. The extrapolation to UniRef50's 59,130,945 sequences
on `--cores` cores assumes the scan stays on one core and the write pass
spreads over all of them.
"""

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

UNIREF50_SEQUENCES = 59_130_945
_ALPHABET = np.frombuffer(b"ALGVSREDTIPKFQNYMHWC", np.uint8)
# UniProtKB/Swiss-Prot amino-acid composition (%), same order as _ALPHABET.
_COMPOSITION = np.array([
    8.25,
    9.65,
    7.07,
    6.86,
    6.56,
    5.53,
    6.72,
    5.46,
    5.34,
    5.91,
    4.74,
    5.80,
    3.86,
    3.93,
    4.06,
    2.92,
    2.41,
    2.27,
    1.10,
    1.38,
])


def make_fasta(path: str, proteins: int, seed: int = 0) -> None:
  """Writes `proteins` UniRef50-like records to a gzipped FASTA file."""
  rng = np.random.default_rng(seed)
  p = _COMPOSITION / _COMPOSITION.sum()
  lengths = np.clip(rng.lognormal(5.3, 0.75, proteins), 11, 35000)
  lengths = lengths.astype(np.int64)
  with gzip.open(path + ".partial", "wt", compresslevel=6) as f:
    for start in range(0, proteins, 10000):
      chunk = lengths[start : start + 10000]
      residues = _ALPHABET[rng.choice(20, size=int(chunk.sum()), p=p)]
      text = residues.tobytes().decode()
      offset, lines = 0, []
      for i, length in enumerate(chunk, start=start):
        sequence = text[offset : offset + length]
        offset += length
        lines.append(
            f">UniRef50_A0A{i:07d} Uncharacterized protein n=1 "
            f"Tax=Bacteria TaxID=2 RepID=A0A{i:07d}_9BACT"
        )
        lines.extend(sequence[j : j + 60] for j in range(0, length, 60))
      f.write("\n".join(lines) + "\n")
  os.rename(path + ".partial", path)


def run_prepare(fasta: str, workers: int) -> dict:
  output = tempfile.mkdtemp(prefix="prepared-")
  try:
    command = [
        sys.executable,
        "-m",
        "ankh3_tasks.prepare",
        f"--input={fasta}",
        f"--output_dir={output}/out",
        f"--workers={workers}",
        "--no_progress",
    ]
    # One worker runs on one CPU; n workers on n (as far as there are).
    cpus = sorted(os.sched_getaffinity(0))[: max(workers, 1)]
    start = time.monotonic()
    subprocess.run(
        command,
        check=True,
        capture_output=True,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )
    wall = time.monotonic() - start
    with open(os.path.join(output, "out", "stats.json")) as f:
      stats = json.load(f)
    stats["wall_seconds"] = wall
    return stats
  finally:
    shutil.rmtree(output, ignore_errors=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--proteins", type=int, default=1_000_000)
  parser.add_argument("--work_dir", default=tempfile.gettempdir())
  parser.add_argument(
      "--workers",
      type=int,
      nargs="*",
      default=[1],
      help="write-pass process counts to measure (1 = one core)",
  )
  parser.add_argument(
      "--cores", type=int, default=8, help="cores of the extrapolation"
  )
  args = parser.parse_args()

  fasta = os.path.join(args.work_dir, f"ankh3_bench_{args.proteins}.fasta.gz")
  if not os.path.exists(fasta):
    start = time.monotonic()
    make_fasta(fasta, args.proteins)
    print(f"generated {fasta} in {time.monotonic() - start:.0f} s")
  size = os.path.getsize(fasta)
  print(
      f"input: {args.proteins:,} proteins, {size / 1e6:,.0f} MB gzipped; "
      f"{os.cpu_count()} CPUs"
  )
  print(
      "| workers | scan s | write s | total s | proteins/s | "
      "scan proteins/s (1 core) | write proteins/s/core |"
  )
  print("|---|---|---|---|---|---|---|")
  results = []
  for workers in args.workers:
    stats = run_prepare(fasta, workers)
    n = stats["read"]
    scan_rate = n / stats["scan_seconds"]
    write_rate = n / stats["write_seconds"] / workers
    results.append((workers, scan_rate, write_rate))
    print(
        f"| {workers} | {stats['scan_seconds']:.1f} | "
        f"{stats['write_seconds']:.1f} | {stats['wall_seconds']:.1f} | "
        f"{n / stats['wall_seconds']:,.0f} | {scan_rate:,.0f} | "
        f"{write_rate:,.0f} |"
    )
  _, scan_rate, write_rate = results[0]
  one_core = 1 / (1 / scan_rate + 1 / write_rate)
  scan_s = UNIREF50_SEQUENCES / scan_rate
  write_s = UNIREF50_SEQUENCES / (write_rate * args.cores)
  print(
      f"\none core, both passes: {one_core:,.0f} proteins/s/core "
      f"(target 20,000)\nUniRef50 ({UNIREF50_SEQUENCES:,}) on "
      f"{args.cores} cores: scan {scan_s / 60:.1f} min on one core + write "
      f"{write_s / 60:.1f} min on {args.cores} = "
      f"{(scan_s + write_s) / 60:.1f} min (extrapolated from the "
      f"{results[0][0]}-worker run)"
  )


if __name__ == "__main__":
  main()
