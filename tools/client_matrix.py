#!/usr/bin/env python3
r"""Checks exported Ankh3 models in the clients people load them with.

Builds side virtual environments, one per transformers release a user may
have (the one the official Ankh library pins, the last 4.x, the 5.x this
package is tested with), and runs in each, on a directory written by
`python -m ankh3_tasks.convert t5x-to-hf`: tokenizer ids against the
package's own, the decode round trip, `model(**batch)`, `generate`, and the
official Ankh library (agemagician/Ankh; CC-BY-NC-SA-4.0, so it is never
copied here: pass a checkout of it) with its loaders, embedding extraction
and `compute_pseudo_likelihood`.

usage:
  python tools/client_matrix.py build [--ankh_source DIR] [--client V ...]
    [--fresh] [--pip_arg ARG ...] [--dry-run]
  python tools/client_matrix.py ankh-likelihood --venv VENV \
    --model_dir HF_DIR --fasta FILE [--device cpu] [--shard_batch_size N]
  python tools/client_matrix.py check --venv VENV --model_dir HF_DIR \
    [--n 3000] [--json OUT]
  python tools/client_matrix.py matrix --model_dir HF_DIR [--client V ...] \
    [--n 3000] [--json OUT]

Side environments live in `$ANKH3_CLIENT_VENVS` (default `.client-venvs/` in
the repository root), named `transformers-<version>`. `build` needs PyPI (or
pip's configured index) and the CPU build of PyTorch: where pip's index has
only the CUDA build, pass `--pip_arg=--extra-index-url=<PyTorch's CPU
index>`. The Ankh library's loaders take hub names only
(`ElnaggarLab/ankh3-large`); the checks run them offline
(`HF_HUB_OFFLINE=1`) in a scratch directory where that name is a link to the
model directory, so they read the export, unchanged.

The commands that run in a side environment re-run this file with its Python
(`VENV/bin/python tools/client_matrix.py _worker ...`), so the parts below
marked "worker" import only the standard library, torch, transformers and
ankh; the main process alone imports `ankh3_tasks`.
"""

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENVS_ENV = "ANKH3_CLIENT_VENVS"
DEFAULT_VENVS = ".client-venvs"
# The hub names the Ankh library's Ankh3 loaders read.
ANKH3_HUB_NAMES = ("ElnaggarLab/ankh3-large", "ElnaggarLab/ankh3-xl")

# What each side environment holds besides the client, at the versions the
# matrix in docs/huggingface.md was measured with. torch: the CPU build this
# package is tested with (requirements/constraints.txt); sentencepiece and
# protobuf for `T5Tokenizer`; tqdm and biopython, which the Ankh library
# imports (its other dependency, `datasets`, it never imports).
_COMMON = (
    "torch==2.13.0",
    "numpy==2.4.6",
    "sentencepiece==0.2.1",
    "protobuf==6.33.6",
    "tqdm==4.70.1",
    "biopython==1.86",
)
# transformers release -> its pins on Python 3.11 beside the packages above.
CLIENTS = {
    # The Ankh library's floor (^4.25.1) with tokenizers 0.13.3; safetensors,
    # without which 4.25.1 reads only pytorch_model.bin. numpy 2 works.
    "4.25.1": (
        "transformers==4.25.1",
        "tokenizers==0.13.3",
        "huggingface-hub==0.36.2",
        "safetensors==0.8.0",
    ),
    # The last 4.x release.
    "4.57.6": (
        "transformers==4.57.6",
        "tokenizers==0.22.2",
        "huggingface-hub==0.36.2",
    ),
    # The release this package's `hf` extra is tested with.
    "5.24.0": (
        "transformers==5.24.0",
        "tokenizers==0.23.3",
        "huggingface-hub==2.4.0",
    ),
}
# The order `build` makes them in (the likelihood parity test needs 4.57.6).
BUILD_ORDER = ("4.57.6", "4.25.1", "5.24.0")


def venvs_root() -> str:
  """The directory of the side environments ($ANKH3_CLIENT_VENVS)."""
  return os.environ.get(VENVS_ENV) or os.path.join(REPO, DEFAULT_VENVS)


def venv_name(client: str) -> str:
  """The side environment's directory name of a transformers release."""
  return f"transformers-{client}"


def venv_python(venv: str) -> str:
  return os.path.join(venv, "bin", "python")


def find_venv(client: str) -> Optional[str]:
  """The side environment of `client` when it is built, else None."""
  venv = os.path.join(venvs_root(), venv_name(client))
  if os.path.exists(os.path.join(venv, ".complete")):
    return venv
  return None


def _run(cmd: Sequence[str], dry_run: bool, **kwargs: Any) -> None:
  print("+ " + shlex.join(cmd), flush=True)
  if not dry_run:
    subprocess.run(cmd, check=True, **kwargs)


def build(
    clients: Sequence[str],
    ankh_source: Optional[str] = None,
    pip_args: Sequence[str] = (),
    fresh: bool = False,
    dry_run: bool = False,
) -> list[str]:
  """Makes the side environments of `clients`; returns their directories.

  A finished one (it holds `.complete`, which records what went in) is kept
  when its record matches; otherwise the pins are installed over it, or,
  with `fresh`, it is made anew.
  """
  root = venvs_root()
  made = []
  for client in clients:
    venv = os.path.join(root, venv_name(client))
    packages = [*CLIENTS[client], *_COMMON]
    record = {
        "python": sys.version.split()[0],
        "packages": packages,
        "ankh_source": os.path.abspath(ankh_source) if ankh_source else None,
    }
    marker = os.path.join(venv, ".complete")
    if os.path.exists(marker) and not fresh:
      with open(marker) as f:
        if json.load(f) == record:
          print(f"{venv}: up to date")
          made.append(venv)
          continue
    if fresh and os.path.exists(venv) and not dry_run:
      import shutil  # pylint: disable=g-import-not-at-top

      shutil.rmtree(venv)
    if os.path.exists(marker) and not dry_run:
      os.remove(marker)
    if not os.path.exists(venv_python(venv)):
      _run([sys.executable, "-m", "venv", venv], dry_run)
    pip = [venv_python(venv), "-m", "pip", "install", *pip_args]
    _run(pip + packages, dry_run)
    if ankh_source:
      # Without its dependencies: they are the pins above, and its own
      # (poetry) ranges would pull transformers 4.x into the 5.x environment.
      _run(pip + ["--no-deps", ankh_source], dry_run)
    if not dry_run:
      with open(marker, "w") as f:
        json.dump(record, f, indent=1)
    made.append(venv)
  return made


# ----------------------------------------------------------------- worker --
# Runs inside a side environment: standard library, torch, transformers and
# ankh only.


def read_fasta(path: str) -> list[tuple[str, str]]:
  """(name, sequence) of each record: the header's first word, lines joined."""
  records = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line.startswith(">"):
        records.append((line[1:].split()[0] if line[1:] else "", []))
      elif line and records:
        records[-1][1].append(line)
  return [(name, "".join(parts)) for name, parts in records]


@contextlib.contextmanager
def _hub_name_at(model_dir: str):
  """A scratch working directory where the Ankh3 hub names are `model_dir`."""
  old = os.getcwd()
  with tempfile.TemporaryDirectory() as tmp:
    for hub_name in ANKH3_HUB_NAMES:
      link = os.path.join(tmp, *hub_name.split("/"))
      os.makedirs(os.path.dirname(link), exist_ok=True)
      os.symlink(os.path.abspath(model_dir), link)
    os.chdir(tmp)
    try:
      yield
    finally:
      os.chdir(old)


def _worker_ankh_likelihood(args: argparse.Namespace) -> dict[str, Any]:
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  records = read_fasta(args.fasta)
  out = {
      "transformers": transformers.__version__,
      "torch": torch.__version__,
      "model_dir": os.path.abspath(args.model_dir),
      "fasta": os.path.abspath(args.fasta),
      "function": "ankh.compute_pseudo_likelihood('ankh3_large', ...)",
  }
  try:
    import ankh  # pylint: disable=g-import-not-at-top
  except Exception as e:  # pylint: disable=broad-except
    out["error"] = f"import ankh: {type(e).__name__}: {e}"
    return out
  with _hub_name_at(args.model_dir):
    start = time.perf_counter()
    try:
      values = ankh.compute_pseudo_likelihood(
          "ankh3_large",
          [seq for _, seq in records],
          device=torch.device(args.device),
          shard_input=args.shard_batch_size > 0,
          shard_batch_size=max(args.shard_batch_size, 1),
      )
    except Exception as e:  # pylint: disable=broad-except
      out["error"] = f"{type(e).__name__}: {e}"
      return out
    out["wall_s"] = time.perf_counter() - start
  out["proteins"] = [
      {"id": name, "length": len(seq), "pseudo_likelihood": value}
      for (name, seq), value in zip(records, values)
  ]
  return out


def _error(e: BaseException) -> str:
  """One line naming an exception, without this machine's paths."""
  import re  # pylint: disable=g-import-not-at-top

  text = f"{type(e).__name__}: {e}".replace("\n", " ")
  text = re.sub(r" \(/[^)]*\)", "", text)
  return text if len(text) <= 300 else text[:297] + "..."


def _head(tensor: Any, dims: int = 16) -> list[list[float]]:
  """The first row of a [batch, length, d] output, first `dims` features."""
  return tensor[0, :, :dims].tolist()


def _client_tokenizers(model_dir: str) -> dict[str, Any]:
  """Loaders of the tokenizer: name -> a function that loads it."""
  import transformers  # pylint: disable=g-import-not-at-top

  loaders = {
      "AutoTokenizer": lambda: transformers.AutoTokenizer.from_pretrained(
          model_dir
      ),
      "T5Tokenizer": lambda: transformers.T5Tokenizer.from_pretrained(
          model_dir
      ),
  }
  if int(transformers.__version__.split(".")[0]) >= 5:

    def workaround():
      # docs/huggingface.md: 5.x T5Tokenizer without its `▁` pre-tokenizer.
      tok = transformers.T5Tokenizer.from_pretrained(model_dir)
      tok.backend_tokenizer.pre_tokenizer = None
      return tok

    loaders["T5Tokenizer, pre_tokenizer=None"] = workaround
  return loaders


def _worker_check(args: argparse.Namespace) -> dict[str, Any]:
  """Runs every client check on `args.model_dir`; returns the raw results."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  with open(args.cases) as f:
    cases = json.load(f)
  texts, ids, proteins = cases["texts"], cases["ids"], cases["proteins"]
  out = {"versions": _versions(), "tokenizers": {}}
  torch.manual_seed(0)
  model_dir = args.model_dir
  try:
    seq2seq = transformers.T5ForConditionalGeneration.from_pretrained(
        model_dir
    ).eval()
    encoder = transformers.T5EncoderModel.from_pretrained(model_dir).eval()
  except Exception as e:  # pylint: disable=broad-except
    out["model_error"] = _error(e)
    return out
  out["lm_head_tied"] = (
      seq2seq.lm_head.weight.data_ptr() == seq2seq.shared.weight.data_ptr()
  )
  with torch.no_grad():
    first = torch.tensor([cases["model_ids"]])
    out["encoder_of_ids"] = _head(encoder(input_ids=first).last_hidden_state)
    out["generate_of_ids"] = seq2seq.generate(
        input_ids=first, max_new_tokens=args.new_tokens, do_sample=False
    )[0].tolist()
  batch_texts = cases["batch_texts"]
  for name, load in _client_tokenizers(model_dir).items():
    row = out["tokenizers"][name] = {}
    try:
      tok = load()
    except Exception as e:  # pylint: disable=broad-except
      row["load_error"] = _error(e)
      continue
    row["class"] = type(tok).__name__
    row["len"] = len(tok)
    row["extra_id_0"] = tok.get_vocab().get("<extra_id_0>")
    try:
      row["ids"] = tok(texts).input_ids
    except Exception as e:  # pylint: disable=broad-except
      row["ids_error"] = _error(e)
    try:
      row["decoded"] = [tok.decode(i, skip_special_tokens=False) for i in ids]
    except Exception as e:  # pylint: disable=broad-except
      row["decode_error"] = _error(e)
    with torch.no_grad():
      try:
        batch = tok(batch_texts, padding=True, return_tensors="pt")
        row["batch_keys"] = sorted(batch.keys())
        encoded = encoder(**batch).last_hidden_state
        row["encoder_of_batch"] = _head(encoded)
        seq2seq(**batch, labels=batch["input_ids"])
        row["model_batch"] = "ok"
      except Exception as e:  # pylint: disable=broad-except
        row["model_batch"] = _error(e)
      try:
        generated = seq2seq.generate(
            **tok(batch_texts[:1], return_tensors="pt"),
            max_new_tokens=args.new_tokens,
            do_sample=False,
        )[0].tolist()
        row["generate"] = generated
        row["generate_decoded"] = tok.decode(
            generated, skip_special_tokens=False
        )
      except Exception as e:  # pylint: disable=broad-except
        row["generate_error"] = _error(e)
  out["ankh"] = _worker_ankh(model_dir, proteins) if args.ankh else None
  return out


def _versions() -> dict[str, str]:
  import importlib.metadata  # pylint: disable=g-import-not-at-top

  found = {}
  for name in (
      "transformers",
      "tokenizers",
      "torch",
      "sentencepiece",
      "numpy",
      "huggingface-hub",
      "ankh",
  ):
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return found


def _worker_ankh(model_dir: str, proteins: list[str]) -> dict[str, Any]:
  """The official Ankh library on `model_dir`, as its README uses it."""
  import torch  # pylint: disable=g-import-not-at-top

  out = {}
  try:
    import ankh  # pylint: disable=g-import-not-at-top
    from ankh import likelihood  # pylint: disable=g-import-not-at-top
  except Exception as e:  # pylint: disable=broad-except
    out["import_error"] = _error(e)
    return out
  with _hub_name_at(model_dir), torch.no_grad():
    try:
      encoder, tok = ankh.load_ankh3_large()
      encoder.eval()
      model, _ = ankh.load_model("ankh3_large", generation=True)
      out["loaders"] = (
          f"{type(encoder).__name__}, {type(model).__name__}, "
          f"{type(tok).__name__} ({len(tok)} tokens)"
      )
    except Exception as e:  # pylint: disable=broad-except
      out["loaders_error"] = _error(e)
      return out
    try:
      # compute_pseudo_likelihood's own tokenization: "[NLU]" + protein.
      out["nlu_ids"] = [
          likelihood.tokenize_sequence(tok, p, "[NLU]")[0][0].tolist()
          for p in proteins
      ]
    except Exception as e:  # pylint: disable=broad-except
      out["nlu_ids_error"] = _error(e)
    try:
      # The README's embedding extraction: residues as words.
      batch = tok(
          [list(p) for p in proteins],
          add_special_tokens=True,
          padding=True,
          is_split_into_words=True,
          return_tensors="pt",
      )
      out["embedding_ids"] = batch["input_ids"].tolist()
      embeddings = encoder(
          input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
      )[0]
      out["embeddings"] = _head(embeddings)
    except Exception as e:  # pylint: disable=broad-except
      out["embeddings_error"] = _error(e)
  with _hub_name_at(model_dir):
    start = time.perf_counter()
    try:
      out["likelihood"] = ankh.compute_pseudo_likelihood(
          "ankh3_large", list(proteins), device=torch.device("cpu")
      )
      out["likelihood_s"] = time.perf_counter() - start
    except Exception as e:  # pylint: disable=broad-except
      out["likelihood_error"] = _error(e)
  return out


def _worker(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(prog="client_matrix.py _worker")
  sub = parser.add_subparsers(dest="command", required=True)
  a = sub.add_parser("ankh-likelihood")
  a.add_argument("--model_dir", required=True)
  a.add_argument("--fasta", required=True)
  a.add_argument("--device", default="cpu")
  a.add_argument("--shard_batch_size", type=int, default=0)
  c = sub.add_parser("check")
  c.add_argument("--model_dir", required=True)
  c.add_argument("--cases", required=True)
  c.add_argument("--output", required=True)
  c.add_argument("--new_tokens", type=int, default=12)
  c.add_argument("--ankh", action="store_true")
  args = parser.parse_args(argv)
  os.environ["HF_HUB_OFFLINE"] = "1"
  os.environ["TRANSFORMERS_OFFLINE"] = "1"
  if args.command == "ankh-likelihood":
    out = _worker_ankh_likelihood(args)
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 1 if "error" in out else 0
  out = _worker_check(args)
  with open(args.output, "w") as f:
    json.dump(out, f)
  return 0


# ------------------------------------------------------------------ main --
# Runs in this package's environment.

# Short proteins with every residue the table reads, the rare ones included
# (O U Z B X), for the model, generation and the Ankh library's checks.
PROTEINS = (
    "MKTAYIAKQRQISFVKSHFSRQ",
    "MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTK",
    "GSHMOUBZXLAGSVERTIDPKNFQYHMCW",
    "mktayiakqr",
)


def random_texts(n: int, seed: int = 0) -> list[str]:
  """Strings as users type them: task tokens, sentinels, case, rare residues.

  Residues (the rare O U Z B X as often as the others), lowercase, `[NLU]` /
  `[S2S]` / `[NLG]` (mostly as a prefix), sentinels anywhere from
  `<extra_id_0>` to `<extra_id_224>`, and spaces. Left out: what
  SentencePiece reads its own way (runs of unknown characters, a terminal
  `*`, lowercase task tokens), listed in ankh3_tasks/hf_tokenizer.py.
  """
  import random  # pylint: disable=g-import-not-at-top

  rng = random.Random(seed)
  residues = list("OLAGSVERTIDPKNFQYHMCWXUZB")
  alphabet = residues * 4 + [r.lower() for r in residues] * 2 + [" "] * 4
  alphabet += ["[NLU]", "[S2S]", "[NLG]"]
  texts = []
  for _ in range(n):
    chars = [rng.choice(alphabet) for _ in range(rng.randint(1, 60))]
    for _ in range(rng.choice((0, 0, 1, 2, 3))):
      chars.insert(
          rng.randrange(len(chars) + 1), f"<extra_id_{rng.randrange(225)}>"
      )
    prefix = rng.choice(("[NLU]", "[S2S]", "[NLU]", "[S2S]", ""))
    texts.append(prefix + "".join(chars))
  return texts


def make_cases(n: int, seed: int = 0) -> dict[str, Any]:
  """The inputs of `check` with the package's ids for them."""
  # pylint: disable-next=g-import-not-at-top
  from ankh3_tasks import vocabularies

  vocab = vocabularies.Ankh3Vocabulary()
  texts = random_texts(n, seed)
  return {
      "texts": texts,
      "ids": [vocab.encode(t) for t in texts],
      "proteins": list(PROTEINS),
      "batch_texts": ["[NLU]" + p for p in PROTEINS[:3]],
      "model_ids": vocab.encode("[NLU]" + PROTEINS[0]) + [vocab.eos_id],
  }


def max_diff(a: Any, b: Any) -> float:
  """Max abs difference of two nested lists of floats over their overlap."""
  if isinstance(a, list) and isinstance(b, list):
    return max((max_diff(x, y) for x, y in zip(a, b)), default=0.0)
  return abs(float(a) - float(b))


def evaluate(cases: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
  """Judges a side environment's raw results against the package's ids."""
  # pylint: disable-next=g-import-not-at-top
  from ankh3_tasks import vocabularies

  vocab = vocabularies.Ankh3Vocabulary()
  eos = vocab.eos_id
  ours = cases["ids"]
  result = {"versions": raw.get("versions", {}), "tokenizers": {}}
  if "model_error" in raw:
    result["model_error"] = raw["model_error"]
    return result
  result["lm_head_tied"] = raw["lm_head_tied"]
  reference_encoder = raw["encoder_of_ids"]
  for name, row in raw["tokenizers"].items():
    judged = result["tokenizers"][name] = {}
    if "load_error" in row:
      judged["load"] = row["load_error"]
      continue
    judged["load"] = f"{row['class']}, {row['len']} tokens"
    judged["extra_id_0"] = row["extra_id_0"]
    if "ids" in row:
      wrong = [i for i, got in enumerate(row["ids"]) if got != ours[i] + [eos]]
      judged["ids_right"] = len(ours) - len(wrong)
      judged["ids_total"] = len(ours)
      judged["ids_first_wrong"] = [
          {
              "text": cases["texts"][i],
              "package": ours[i] + [eos],
              "client": row["ids"][i],
          }
          for i in wrong[:3]
      ]
    else:
      judged["ids_error"] = row["ids_error"]
    if "decoded" in row:
      wrong = [
          i
          for i, text in enumerate(row["decoded"])
          if vocab.encode(text) != ours[i]
      ]
      judged["decode_right"] = len(ours) - len(wrong)
      judged["decode_first_wrong"] = [
          {"ids": ours[i], "client": row["decoded"][i]} for i in wrong[:3]
      ]
    else:
      judged["decode_error"] = row["decode_error"]
    judged["batch_keys"] = row.get("batch_keys")
    judged["model_batch"] = row.get("model_batch")
    if "encoder_of_batch" in row:
      judged["encoder_batch_vs_ids"] = max_diff(
          row["encoder_of_batch"], reference_encoder
      )
    if "generate" in row:
      judged["generate_same_as_ids"] = row["generate"] == raw["generate_of_ids"]
      judged["generate_decode_round_trip"] = (
          vocab.encode(row["generate_decoded"]) == row["generate"]
      )
    else:
      judged["generate"] = row.get("generate_error")
  result["encoder_of_ids"] = reference_encoder
  result["generate_of_ids"] = raw["generate_of_ids"]
  result["ankh"] = _evaluate_ankh(cases, raw.get("ankh"), vocab)
  return result


def _evaluate_ankh(
    cases: dict[str, Any], raw: Optional[dict[str, Any]], vocab: Any
) -> Optional[dict[str, Any]]:
  if raw is None:
    return None
  judged = dict(raw)
  proteins = cases["proteins"]
  if "nlu_ids" in raw:
    judged["nlu_ids_right"] = sum(
        got == vocab.encode("[NLU]" + p) + [vocab.eos_id]
        for got, p in zip(raw["nlu_ids"], proteins)
    )
  if "embedding_ids" in raw:
    judged["embedding_ids_right"] = sum(
        got[: len(p) + 1] == vocab.encode(p) + [vocab.eos_id]
        for got, p in zip(raw["embedding_ids"], proteins)
    )
  if "likelihood" in raw:
    judged["likelihood_finite"] = all(0.0 < v <= 1.0 for v in raw["likelihood"])
  return judged


def check(
    venv: str,
    model_dir: str,
    cases: dict[str, Any],
    ankh: bool = True,
    timeout: float = 3600,
) -> dict[str, Any]:
  """Runs the client checks in `venv` on `model_dir`; returns the verdicts."""
  with tempfile.TemporaryDirectory() as tmp:
    cases_file = os.path.join(tmp, "cases.json")
    output = os.path.join(tmp, "raw.json")
    with open(cases_file, "w") as f:
      json.dump(cases, f)
    argv = [
        "check",
        f"--model_dir={os.path.abspath(model_dir)}",
        f"--cases={cases_file}",
        f"--output={output}",
    ]
    if ankh:
      argv.append("--ankh")
    run = run_worker(venv, argv, timeout=timeout)
    if run.returncode:
      raise RuntimeError(
          f"{venv}: the check failed (status {run.returncode}):\n"
          + run.stderr[-5000:]
      )
    with open(output) as f:
      raw = json.load(f)
  return evaluate(cases, raw)


def _ok(value: Any) -> str:
  return "ok" if value == "ok" else f"fails: {value}"


def table(results: dict[str, dict[str, Any]]) -> str:
  """The matrix as Markdown: one row per client and tokenizer loader."""
  lines = [
      (
          "| transformers (tokenizers) | loaded with | gives | ids right | "
          "decode round trip | model(**batch) | generate |"
      ),
      "| --- | --- | --- | --- | --- | --- | --- |",
  ]
  for client, result in results.items():
    versions = result["versions"]
    label = f"{versions.get('transformers', client)} " + (
        f"({versions.get('tokenizers', '?')})"
    )
    if "model_error" in result:
      lines.append(f"| {label} | | model: {result['model_error']} | | | | |")
      continue
    for name, row in result["tokenizers"].items():
      if "ids_total" not in row:
        lines.append(f"| {label} | {name} | {row['load']} | | | | |")
        continue
      ids = f"{row['ids_right']:,} / {row['ids_total']:,}"
      decode = f"{row.get('decode_right', 0):,} / {row['ids_total']:,}"
      batch = _ok(row["model_batch"])
      if row["model_batch"] == "ok":
        batch += f" (max diff {row['encoder_batch_vs_ids']:.1e})"
      if "generate_same_as_ids" in row:
        generate = (
            "same ids" if row["generate_same_as_ids"] else "other ids"
        ) + (
            ", decodes back"
            if row["generate_decode_round_trip"]
            else ", does not decode back"
        )
      else:
        generate = f"fails: {row['generate']}"
      lines.append(
          f"| {label} | {name} | {row['load']} | {ids} | {decode} | "
          f"{batch} | {generate} |"
      )
  return "\n".join(lines)


def ankh_table(results: dict[str, dict[str, Any]]) -> str:
  """The Ankh library's rows as Markdown."""
  lines = [
      (
          "| transformers | ankh loaders | `[NLU]` ids (likelihood) | "
          "README embeddings | compute_pseudo_likelihood |"
      ),
      "| --- | --- | --- | --- | --- |",
  ]
  for client, result in results.items():
    ankh = result.get("ankh")
    version = result["versions"].get("transformers", client)
    if ankh is None:
      lines.append(f"| {version} | not run: no --ankh_source | | | |")
      continue
    if "import_error" in ankh:
      lines.append(f"| {version} | import ankh: {ankh['import_error']} | | | |")
      continue
    if "loaders_error" in ankh:
      lines.append(f"| {version} | {ankh['loaders_error']} | | | |")
      continue
    n = len(PROTEINS)
    nlu = (
        f"{ankh['nlu_ids_right']} / {n}"
        if "nlu_ids_right" in ankh
        else ankh.get("nlu_ids_error")
    )
    emb = (
        f"ids {ankh['embedding_ids_right']} / {n}"
        if "embedding_ids_right" in ankh
        else ankh.get("embeddings_error")
    )
    if "likelihood" in ankh:
      values = ", ".join(f"{v:.4g}" for v in ankh["likelihood"])
      like = (
          "finite" if ankh["likelihood_finite"] else "NOT in (0, 1]"
      ) + f": {values} ({ankh['likelihood_s']:.1f} s)"
    else:
      like = f"fails: {ankh['likelihood_error']}"
    lines.append(f"| {version} | {ankh['loaders']} | {nlu} | {emb} | {like} |")
  return "\n".join(lines)


def run_worker(venv: str, argv: Sequence[str], timeout: float = 3600):
  """Runs `_worker argv` in `venv`; returns the CompletedProcess."""
  env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
  env.pop("PYTHONPATH", None)
  return subprocess.run(
      [venv_python(venv), os.path.abspath(__file__), "_worker", *argv],
      capture_output=True,
      text=True,
      env=env,
      timeout=timeout,
  )


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python tools/client_matrix.py",
      description=__doc__.split("\n")[0],
  )
  sub = parser.add_subparsers(dest="command", required=True)
  b = sub.add_parser("build", help="make the side environments")
  b.add_argument(
      "--client",
      action="append",
      choices=sorted(CLIENTS),
      help="transformers release (repeatable); default: all",
  )
  b.add_argument("--ankh_source", help="a checkout of agemagician/Ankh")
  b.add_argument(
      "--pip_arg", action="append", default=[], help="passed to pip install"
  )
  b.add_argument(
      "--fresh", action="store_true", help="remove and remake each venv"
  )
  b.add_argument("--dry-run", action="store_true", dest="dry_run")
  a = sub.add_parser(
      "ankh-likelihood",
      help="the Ankh library's compute_pseudo_likelihood per protein, as JSON",
  )
  a.add_argument("--venv", required=True, help="a side environment")
  a.add_argument("--model_dir", required=True, help="an exported HF model")
  a.add_argument("--fasta", required=True)
  a.add_argument("--device", default="cpu")
  a.add_argument(
      "--shard_batch_size",
      type=int,
      default=0,
      help=(
          "compute_pseudo_likelihood(shard_input=True, shard_batch_size=N); "
          "0: its default, unsharded"
      ),
  )
  for name, text in (
      ("check", "run every client check in one side environment"),
      ("matrix", "run the checks in every built side environment"),
  ):
    c = sub.add_parser(name, help=text)
    if name == "check":
      c.add_argument("--venv", required=True, help="a side environment")
    else:
      c.add_argument(
          "--client",
          action="append",
          choices=sorted(CLIENTS),
          help="transformers release (repeatable); default: all built",
      )
    c.add_argument("--model_dir", required=True, help="an exported HF model")
    c.add_argument(
        "--n", type=int, default=3000, help="random strings to tokenize"
    )
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", help="write the verdicts to this file")
  return parser.parse_args(argv)


def built_with_ankh(venv: str) -> bool:
  """Whether `build` installed the Ankh library into `venv`."""
  try:
    with open(os.path.join(venv, ".complete")) as f:
      return bool(json.load(f).get("ankh_source"))
  except (OSError, ValueError):
    return False


def versions_table(results: dict[str, dict[str, Any]]) -> str:
  """What each side environment held, as Markdown."""
  names = (
      "transformers",
      "tokenizers",
      "torch",
      "sentencepiece",
      "numpy",
      "huggingface-hub",
      "ankh",
  )
  lines = [
      "| " + " | ".join(names) + " | check (s) |",
      "|" + " --- |" * (len(names) + 1),
  ]
  for result in results.values():
    found = result["versions"]
    cells = [found.get(name, "-") for name in names]
    cells.append(f"{result.get('check_s', 0):.0f}")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _report(results: dict[str, Any], json_file: Optional[str]) -> None:
  print(versions_table(results))
  print()
  print(table(results))
  print()
  print(ankh_table(results))
  if json_file:
    with open(json_file, "w") as f:
      json.dump(results, f, indent=1)


def main(argv: Optional[Sequence[str]] = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  if argv[:1] == ["_worker"]:
    return _worker(argv[1:])
  args = _parse(argv)
  if args.command == "build":
    clients = args.client or BUILD_ORDER
    ankh = args.ankh_source
    if ankh and not os.path.exists(
        os.path.join(ankh, "src", "ankh", "likelihood.py")
    ):
      print(
          f"error: {ankh} is not a checkout of agemagician/Ankh with "
          "src/ankh/likelihood.py",
          file=sys.stderr,
      )
      return 2
    build(clients, ankh, args.pip_arg, args.fresh, args.dry_run)
    return 0
  if args.command == "ankh-likelihood":
    run = run_worker(
        args.venv,
        [
            "ankh-likelihood",
            f"--model_dir={os.path.abspath(args.model_dir)}",
            f"--fasta={os.path.abspath(args.fasta)}",
            f"--device={args.device}",
            f"--shard_batch_size={args.shard_batch_size}",
        ],
    )
    sys.stdout.write(run.stdout)
    if run.returncode:
      sys.stderr.write(run.stderr[-5000:])
    return run.returncode
  if args.command == "check":
    venvs = {os.path.basename(os.path.normpath(args.venv)): args.venv}
  else:
    venvs = {}
    for client in args.client or sorted(CLIENTS):
      venv = find_venv(client)
      if venv is None:
        print(
            f"{client}: no side environment in {venvs_root()} (build it: "
            f"python tools/client_matrix.py build --client {client})",
            file=sys.stderr,
        )
      else:
        venvs[client] = venv
  cases = make_cases(args.n, args.seed)
  results = {}
  for client, venv in venvs.items():
    start = time.perf_counter()
    results[client] = check(
        venv, args.model_dir, cases, ankh=built_with_ankh(venv)
    )
    results[client]["check_s"] = time.perf_counter() - start
    print(f"{client}: {results[client]['check_s']:.0f} s", file=sys.stderr)
  _report(results, args.json)
  return 0


if __name__ == "__main__":
  sys.exit(main())
