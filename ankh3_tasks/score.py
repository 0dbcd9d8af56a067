r"""Pseudo-likelihoods, completion likelihoods and variant scores (needs T5X).

  python -m ankh3_tasks.score --checkpoint=MODEL_DIR/checkpoint_N \
    --gin_file=gin/models/ankh3_large.gin --input=proteins.fasta \
    --output=scores.tsv [--completion] [--prefix_fraction=0.5] \
    [--variants=variants.csv --variants_output=variants.tsv] \
    [--variant_pll] [--max_length=512] [--long=window|refuse] \
    [--batch_tokens=N] [--pad_multiple=64]

Pseudo-log-likelihood, the Ankh3 recipe (as the Ankh library's
`compute_pseudo_likelihood`): the encoder reads `[NLU] residues </s>` with
residue i replaced by `<extra_id_0>`, the decoder is fed `[0, <extra_id_0>]`
(T5's decoder start, then the sentinel), and its second output scores the
hidden residue. The softmax runs over the tokens that do not start with `<`
or `[` (the library's rule: the 25 residue letters of the built-in table).
On `MKT`:

  [NLU] <extra_id_0> K T </s>   decoder [0, <extra_id_0>]   log p(M)
  [NLU] M <extra_id_0> T </s>   decoder [0, <extra_id_0>]   log p(K)
  [NLU] M K <extra_id_0> </s>   decoder [0, <extra_id_0>]   log p(T)

and the pseudo-log-likelihood is their sum (nats); the library's value is
exp(sum / length).

Completion likelihood: the encoder reads `[S2S]` and the first residues of
the protein (the package's completion cut, `preprocessors.prefix_length`, as
in pretraining), the decoder is teacher-forced with the rest, and the score
is the sum of log p(residue) over the rest (full softmax; `</s>` not
scored): log p(second half | first half).

Variants (`A23G`, `A23G:L50P`; 1-based, the wild-type letter checked): the
mutated positions are masked together, by `<extra_id_0>`, `<extra_id_1>`,
... in order as in pretraining, and the decoder is teacher-forced twice,
`[0, <extra_id_0>, w1, <extra_id_1>, ...]` with the wild-type residues and
with the mutant ones. The masked marginal is the sum over the mutated
positions of log p(mutant) - log p(wild type), softmax as for the
pseudo-likelihood; for a single mutant these are exactly the two
probabilities of one masked copy, and for several each position is
conditioned by the decoder on the earlier ones of its own sequence.

Proteins longer than `max_length - 2` residues (`long="window"`, the
default): each masked copy is a window of `max_length - 2` residues centred
on the masked residue (shifted to fit inside the protein), with its own
`[NLU]` and `</s>`; a variant's window is centred on the middle of its
mutated positions, which must fit in one window; the completion's encoder
reads the last `max_length - 2` residues of the prefix (as `t5x.infer`
completion does). `long="refuse"` does not score such proteins instead; the
command reports each by id and length.

Batching: every masked copy (or completion, or variant) is one row. Rows are
sorted by length, padded to a multiple of `pad_multiple` encoder ids and a
power of two of decoder ids, and scored `batch_tokens // width` rows (at
least 4) per device call, rows of many proteins in one call (a shape with
fewer rows than that: one call of a power of two of rows). The function is
compiled once per shape. Padding is masked: a row's score does not depend on
its batch. `batch_tokens` defaults to 1,024 on CPU, where small calls stay
in the cache (twice the residues per second of 16,384 on one core, measured
with the tiny model), and to 16,384 on accelerators.
"""

import argparse
import collections
from collections.abc import Callable, Iterable, Sequence
import csv
import dataclasses
import functools
import json
import os
import re
import sys
import time
from typing import Any, Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from ankh3_tasks import cli
from ankh3_tasks import embed
from ankh3_tasks import preprocessors
from ankh3_tasks import progress
from ankh3_tasks import sources
from ankh3_tasks import vocabularies

BATCH_TOKENS = 16384
BATCH_TOKENS_CPU = 1024
# Rows per call however long they are: on CPU, calls of 1 or 2 rows of 512
# ids ran at two thirds of the speed of calls of 4 (tiny model, one core).
_MIN_ROWS = 4
PAD_MULTIPLE = 64
MAX_LENGTH = 512
WINDOW = "window"
REFUSE = "refuse"
PREFIX_FRACTION = 0.5
# T5's decoder starts from id 0 (T5X's shift right, Hugging Face's
# `decoder_start_token_id`).
_DECODER_START = 0

TOO_LONG = "longer than max_length - 2"
NOT_IN_TOKENIZER = "residues the tokenizer lacks"

# Output columns of the proteins file (`write_rows` / `read_rows`).
ID = "id"
LENGTH = "length"
PLL = "pseudo_log_likelihood"
PLL_PER_RESIDUE = "pseudo_log_likelihood_per_residue"
COMPLETION_PREFIX = "completion_prefix_length"
COMPLETION = "completion_log_likelihood"
COMPLETION_PER_RESIDUE = "completion_log_likelihood_per_residue"
SKIPPED = "skipped"
# Columns the variants file adds to the input's.
MASKED_MARGINAL = "masked_marginal"
PLL_DIFFERENCE = "pseudo_log_likelihood_difference"
# Columns of the variants CSV.
MUTANT_COLUMNS = ("mutant", "mutations")

_MUTATION_RE = re.compile(r"([A-Za-z])([0-9]+)([A-Za-z])")


# ---------------------------------------------------------------- mutations


@dataclasses.dataclass(frozen=True)
class Mutation:
  """One substitution: `A23G` is `Mutation("A", 23, "G")` (1-based)."""

  wild_type: str
  position: int
  mutant: str

  def __str__(self) -> str:
    return f"{self.wild_type}{self.position}{self.mutant}"


def parse_mutations(text: str) -> list[Mutation]:
  """Parses `A23G:L50P` (or `A23G`; empty: the wild type) to mutations.

  Raises:
    ValueError: for text that is not `:`-separated substitutions of residue
      letters, or a position given twice.
  """
  mutations = []
  for part in text.strip().split(":") if text.strip() else []:
    match = _MUTATION_RE.fullmatch(part.strip())
    if not match:
      raise ValueError(f"{part.strip()!r} is not a substitution such as A23G")
    wild_type, position, mutant = match.groups()
    mutations.append(Mutation(wild_type.upper(), int(position), mutant.upper()))
  for letter in {m.mutant for m in mutations} | {
      m.wild_type for m in mutations
  }:
    if letter not in vocabularies.RESIDUES:
      raise ValueError(f"{letter!r} is not a residue letter")
  positions = [m.position for m in mutations]
  if len(set(positions)) != len(positions):
    raise ValueError(f"a position is mutated twice in {text.strip()!r}")
  return sorted(mutations, key=lambda m: m.position)


def check_mutations(sequence: str, mutations: Iterable[Mutation]) -> None:
  """Raises ValueError unless every mutation fits `sequence`.

  `check_mutations("MKT", [Mutation("K", 2, "A")])` passes;
  `Mutation("A", 2, "G")` raises `position 2 is K, not A`.
  """
  for m in mutations:
    if not 1 <= m.position <= len(sequence):
      raise ValueError(
          f"{m}: position {m.position} is outside 1..{len(sequence)}"
      )
    if sequence[m.position - 1] != m.wild_type:
      raise ValueError(
          f"{m}: position {m.position} is {sequence[m.position - 1]}, not "
          f"{m.wild_type}"
      )


def window_start(length: int, centre: int, window: int) -> int:
  """Start of the `window` residues centred on `centre`, inside the protein.

  `window_start(10, 1, 4)` -> 0; `(10, 5, 4)` -> 3; `(10, 9, 4)` -> 6.
  """
  return min(max(centre - window // 2, 0), max(length - window, 0))


def variant_window(
    length: int, mutations: Sequence[Mutation], window: int
) -> int:
  """Start (0-based) of the window a variant is scored in.

  Raises:
    ValueError: when the mutated positions do not fit in one window.
  """
  if not mutations:
    return 0
  first, last = mutations[0].position - 1, mutations[-1].position - 1
  if last - first >= window:
    raise ValueError(
        f"the mutated positions {first + 1}..{last + 1} span more than "
        f"max_length - 2 = {window} residues"
    )
  return window_start(length, (first + last) // 2, window)


def apply_mutations(sequence: str, mutations: Iterable[Mutation]) -> str:
  """The mutant sequence: `("MKT", [K2A])` -> `"MAT"` (checked)."""
  mutations = list(mutations)
  check_mutations(sequence, mutations)
  residues = list(sequence)
  for m in mutations:
    residues[m.position - 1] = m.mutant
  return "".join(residues)


# ------------------------------------------------------------------ scoring


@dataclasses.dataclass(frozen=True)
class _Row:
  """Encoder ids and K decoder target sequences scored against them."""

  encoder: tuple[int, ...]
  targets: tuple[tuple[int, ...], ...]


@functools.partial(jax.jit, static_argnums=0)
def _target_log_probs(module, params, encoder_tokens, targets, allowed):
  """log p(target) per decoder position: (over `allowed`, over all) [B,K,T]."""
  rows, copies, length = targets.shape
  encoded = module.apply(
      {"params": params},
      encoder_tokens,
      method=module.encode,
      enable_dropout=False,
  )
  flat = targets.reshape(rows * copies, length)
  inputs = jnp.concatenate(
      [jnp.full_like(flat[:, :1], _DECODER_START), flat[:, :-1]], axis=1
  )
  logits = module.apply(
      {"params": params},
      jnp.repeat(encoded, copies, axis=0),
      jnp.repeat(encoder_tokens, copies, axis=0),
      inputs,
      flat,
      method=module.decode,
      enable_dropout=False,
  ).astype(jnp.float32)
  every = jax.nn.log_softmax(logits)
  some = jax.nn.log_softmax(jnp.where(allowed, logits, -jnp.inf))
  index = flat[..., None]
  pick = lambda x: jnp.take_along_axis(x, index, axis=-1)[..., 0]
  shape = (rows, copies, length)
  return pick(some).reshape(shape), pick(every).reshape(shape)


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def _power_of_two(n: int) -> int:
  return 1 << max(n - 1, 0).bit_length()


@dataclasses.dataclass
class Scorer:
  """Scores rows of a T5X Ankh3 model in batches (see the module docstring).

  Attributes:
    model: a `t5x.models.EncoderDecoderModel` of the Ankh3 network
      (`embed.load_checkpoint`).
    params: its parameters.
    max_length: encoder ids per protein, task token and `</s>` included.
    long: `window` or `refuse`, for proteins of more than `max_length - 2`
      residues.
    batch_tokens: encoder and decoder ids per device call; None:
      `BATCH_TOKENS_CPU` on CPU, else `BATCH_TOKENS`.
    pad_multiple: encoder rows are padded to a multiple of this.
    progress: called with the number of rows scored after each call.
  """

  model: Any
  params: Any
  max_length: int = MAX_LENGTH
  long: str = WINDOW
  batch_tokens: Optional[int] = None
  pad_multiple: int = PAD_MULTIPLE
  progress: Optional[Callable[[int], Any]] = None

  def __post_init__(self):
    if self.batch_tokens is None:
      cpu = jax.default_backend() == "cpu"
      self.batch_tokens = BATCH_TOKENS_CPU if cpu else BATCH_TOKENS
    if self.max_length < 3 or self.batch_tokens < 1 or self.pad_multiple < 1:
      raise ValueError(
          "Need max_length >= 3, batch_tokens >= 1, pad_multiple >= 1; got "
          f"{self.max_length}, {self.batch_tokens}, {self.pad_multiple}."
      )
    if self.long not in (WINDOW, REFUSE):
      raise ValueError(
          f"long must be {WINDOW!r} or {REFUSE!r}, got {self.long!r}."
      )
    # Once on the device, not copied there by every call.
    self.params = jax.device_put(self.params)

  @property
  def window(self) -> int:
    """Residues per encoder row: `max_length - 2`."""
    return self.max_length - 2

  @property
  def vocabulary(self) -> vocabularies.Ankh3Vocabulary:
    return self.model.input_vocabulary

  def scored_tokens(self) -> np.ndarray:
    """bool [vocab]: the tokens the residue softmax runs over."""
    return np.array(
        [not t.startswith(("<", "[")) for t in self.vocabulary.tokens]
    )

  def clean(self, sequence: str, index: Any = None) -> str:
    """The cleaned protein (`mkt a*` -> `MKTA`), or ValueError naming `index`.

    Raises:
      ValueError: for an empty sequence, characters that are not residues,
        residues the tokenizer lacks, or (`long="refuse"`) more than
        `max_length - 2`.
    """
    cleaned = sources.clean_sequence(sequence)[0]
    reason = problem(cleaned, self.vocabulary, self.max_length, self.long)
    if reason:
      name = f"Sequence {index}" if index is not None else "The wild type"
      raise ValueError(f"{name}: {reason}.")
    return cleaned

  def run(self, rows: Sequence[_Row]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Scores rows: per row, (log p over residues, over all) [K, T]."""
    allowed = jnp.asarray(self.scored_tokens())
    shapes = []
    for row in rows:
      shapes.append((
          len(row.targets),
          _power_of_two(max(len(t) for t in row.targets)),
          _round_up(len(row.encoder), self.pad_multiple),
      ))
    order = sorted(range(len(rows)), key=lambda i: shapes[i])
    results = [None] * len(rows)
    start = 0
    while start < len(order):
      shape = shapes[order[start]]
      end = start
      while end < len(order) and shapes[order[end]] == shape:
        end += 1
      copies, length, width = shape
      capacity = max(_MIN_ROWS, self.batch_tokens // (width + copies * length))
      # One compiled shape per bucket: full calls (the last one padded),
      # or, for a bucket smaller than one call, a power of two of rows.
      size = min(capacity, _power_of_two(end - start))
      for b in range(start, end, capacity):
        members = order[b : min(b + capacity, end)]
        tokens = np.zeros((size, width), np.int32)
        targets = np.zeros((size, copies, length), np.int32)
        for r, i in enumerate(members):
          tokens[r, : len(rows[i].encoder)] = rows[i].encoder
          for k, target in enumerate(rows[i].targets):
            targets[r, k, : len(target)] = target
        some, every = _target_log_probs(
            self.model.module, self.params, tokens, targets, allowed
        )
        some, every = np.asarray(some), np.asarray(every)
        for r, i in enumerate(members):
          n = len(rows[i].targets[0])
          results[i] = (some[r, :, :n], every[r, :, :n])
        if self.progress:
          self.progress(len(members))
      start = end
    return results

  # ------------------------------------------------------------ row makers

  def _nlu(self, ids: Sequence[int]) -> list[int]:
    vocab = self.vocabulary
    return [vocab.token_id(vocabularies.NLU), *ids, vocab.eos_id]

  def pll_rows(self, ids: Sequence[int]) -> list[_Row]:
    """One masked copy per residue: `[NLU] ... <extra_id_0> ... </s>`."""
    sentinel = self.vocabulary.sentinel_id(0)
    rows = []
    for i, residue in enumerate(ids):
      start = window_start(len(ids), i, self.window)
      masked = list(ids[start : start + self.window])
      masked[i - start] = sentinel
      rows.append(_Row(tuple(self._nlu(masked)), ((sentinel, residue),)))
    return rows

  def completion_row(self, ids: Sequence[int], prefix: int) -> _Row:
    """`[S2S] prefix </s>`, the rest as the decoder's targets."""
    vocab = self.vocabulary
    seen = ids[max(prefix - self.window, 0) : prefix]
    encoder = [vocab.token_id(vocabularies.S2S), *seen, vocab.eos_id]
    return _Row(tuple(encoder), (tuple(ids[prefix:]),))

  def variant_row(
      self, ids: Sequence[int], mutations: Sequence[Mutation]
  ) -> _Row:
    """The mutated positions masked together; wild-type and mutant targets."""
    vocab = self.vocabulary
    start = variant_window(len(ids), mutations, self.window)
    masked = list(ids[start : start + self.window])
    wild_type, mutant = [], []
    for k, m in enumerate(mutations):
      sentinel = vocab.sentinel_id(k)
      masked[m.position - 1 - start] = sentinel
      wild_type += [sentinel, ids[m.position - 1]]
      mutant += [sentinel, vocab.token_id(m.mutant)]
    return _Row(tuple(self._nlu(masked)), (tuple(wild_type), tuple(mutant)))

  # ------------------------------------------------------------ public API

  def pseudo_log_likelihoods(
      self, sequences: Sequence[str]
  ) -> list[np.ndarray]:
    """log p(residue i | the protein with i masked), per residue (nats).

    `scorer.pseudo_log_likelihoods(["MKT"])` -> `[array([lp_M, lp_K,
    lp_T])]`; sum for the pseudo-log-likelihood.

    Raises:
      ValueError: for a sequence that is not a protein or is too long,
        naming its index.
    """
    rows, counts = [], []
    for i, sequence in enumerate(sequences):
      protein_rows = self.pll_rows(
          self.vocabulary.encode(self.clean(sequence, i))
      )
      rows += protein_rows
      counts.append(len(protein_rows))
    scored = self.run(rows)
    out, start = [], 0
    for n in counts:
      out.append(
          np.array([s[0][0, 1] for s in scored[start : start + n]], np.float64)
      )
      start += n
    return out

  def completion_log_likelihoods(
      self, sequences: Sequence[str], prefix_fraction: float = PREFIX_FRACTION
  ) -> list[tuple[int, np.ndarray]]:
    """(prefix residues, log p of each later residue given the earlier).

    `["MKTAYIAK"]` with fraction 0.5 -> `[(4, array of 4 values))]`: the
    encoder reads `[S2S] M K T A </s>`, the values are log p(Y), log p(I |
    Y), ... (full softmax). A 1-residue protein has prefix 0.

    Raises:
      ValueError: for a fraction outside (0, 1) or a bad sequence.
    """
    if not 0.0 < prefix_fraction < 1.0:
      raise ValueError(
          f"prefix_fraction must be in (0, 1), got {prefix_fraction}."
      )
    rows, prefixes = [], []
    for i, sequence in enumerate(sequences):
      ids = self.vocabulary.encode(self.clean(sequence, i))
      prefix = preprocessors.prefix_length(
          len(ids), prefix_fraction, keep_target=True
      )
      prefixes.append(prefix)
      rows.append(self.completion_row(ids, prefix))
    scored = self.run(rows)
    return [
        (p, np.asarray(s[1][0], np.float64)) for p, s in zip(prefixes, scored)
    ]

  def masked_marginals(
      self, wild_type: str, variants: Sequence[Sequence[Mutation]]
  ) -> list[float]:
    """Sum over mutated positions of log p(mutant) - log p(wild type).

    `masked_marginals("MKT", [[K2A], [M1L, T3S]])` -> two floats; the
    positions of a variant are masked together. An empty variant scores 0.

    Raises:
      ValueError: for a mutation that does not fit the wild type (naming
        the variant's index) or a bad wild type.
    """
    wild_type = self.clean(wild_type)
    ids = self.vocabulary.encode(wild_type)
    rows = []
    for i, mutations in enumerate(variants):
      try:
        check_mutations(wild_type, mutations)
        variant_window(len(wild_type), mutations, self.window)
      except ValueError as e:
        raise ValueError(f"Variant {i}: {e}.") from e
      if len(mutations) > vocabularies.NUM_SENTINELS:
        raise ValueError(
            f"Variant {i}: {len(mutations)} mutations, more than the "
            f"{vocabularies.NUM_SENTINELS} sentinels."
        )
      rows.append(self.variant_row(ids, mutations))
    scored = iter(self.run([r for r in rows if r.targets[0]]))
    out = []
    for row in rows:
      some = next(scored)[0] if row.targets[0] else np.zeros((2, 0))
      out.append(float(np.sum(some[1, 1::2]) - np.sum(some[0, 1::2])))
    return out


def problem(
    sequence: str,
    vocabulary: vocabularies.Ankh3Vocabulary,
    max_length: int,
    long: str = WINDOW,
) -> str:
  """Why a protein cannot be scored ('' when it can).

  `problem("MK1", vocab, 512)` -> `"invalid characters '1'"`.
  """
  cleaned, reason, detail = sources.clean_sequence(sequence)
  if reason:
    return f"{reason} {detail}".rstrip()
  if cleaned != sequence:
    return "not a cleaned sequence (upper-case residues only)"
  if long == REFUSE and len(sequence) > max_length - 2:
    return f"{TOO_LONG} = {max_length - 2} ({len(sequence)} residues)"
  if vocabulary.count_unknown(vocabulary.encode(sequence)):
    return f"{NOT_IN_TOKENIZER} ({vocabulary.source})"
  return ""


# ------------------------------------------------------------------- files


def check_output(path: str) -> None:
  """Raises ValueError unless `path` ends in .tsv or .json."""
  if not path.endswith((".tsv", ".json")):
    raise ValueError(f"{path}: the output must end in .tsv or .json.")


def _format(value: Any) -> str:
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:.6f}"
  return str(value)


def write_rows(path: str, columns: Sequence[str], rows: Sequence[dict]) -> None:
  """Writes rows as TSV (empty cells for None) or a JSON list of objects."""
  check_output(path)
  with open(path, "w", newline="") as f:
    if path.endswith(".json"):
      json.dump([{c: r.get(c) for c in columns} for r in rows], f, indent=1)
      f.write("\n")
      return
    writer = csv.writer(f, delimiter="\t", lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
      writer.writerow([_format(r.get(c)) for c in columns])


def read_rows(path: str) -> list[dict]:
  """Reads what `write_rows` wrote; TSV cells as strings, empty as None."""
  with open(path, newline="") as f:
    if path.endswith(".json"):
      return json.load(f)
    return [
        {k: v if v != "" else None for k, v in row.items()}
        for row in csv.DictReader(f, delimiter="\t")
    ]


class _InOrder(sources.ReadStats):
  """ReadStats that also lists every record, good or skipped, in order."""

  def __init__(self, name: str):
    super().__init__(name)
    self.records: list[tuple[str, Optional[str], str]] = []

  def skip(self, record_id: str, reason: str, detail: str = "") -> None:
    super().skip(record_id, reason, detail)
    self.records.append((record_id, None, f"{reason} {detail}".rstrip()))


def read_proteins(path: str) -> tuple[list, sources.ReadStats]:
  """Every record of a protein file, in order: (id, sequence, reason).

  Good records have reason `''`; skipped ones have sequence None and the
  reader's reason (`empty sequence`, `invalid characters 'J'`, ...).

  Raises:
    ValueError: when ids repeat, naming them.
  """
  stats = _InOrder(os.path.basename(path))
  for record_id, sequence in sources.read_records(path, stats):
    stats.records.append((record_id, sequence, ""))
  repeated = [
      i
      for i, n in collections.Counter(r[0] for r in stats.records).items()
      if n > 1
  ]
  if repeated:
    raise ValueError(
        f"{path}: {len(repeated)} ids name several records (duplicate ids): "
        f"{repeated[:10]}. Make the ids unique."
    )
  return stats.records, stats


@dataclasses.dataclass
class Variant:
  """One row of a variants file."""

  row: int  # The file's line, the header being 1.
  protein_id: str
  mutations: list[Mutation]
  fields: dict[str, str]


def read_variants(
    path: str,
    proteins: dict[str, str],
    skipped: dict[str, str],
    window: int = MAX_LENGTH - 2,
) -> tuple[list[Variant], list[str]]:
  """Reads and checks a variants CSV/TSV; returns the variants and columns.

  Columns: `mutant` (or `mutations`), e.g. `A23G:L50P`, and `id` naming the
  wild type in the proteins file (optional when it holds one protein).

  Args:
    path: the file (`.tsv` is tab-separated, anything else CSV).
    proteins: the scored proteins, by id.
    skipped: the reasons of the proteins that are not scored, by id.
    window: residues per encoder row (`max_length - 2`): a variant's
      mutated positions must fit in one.

  Returns:
    The variants in file order, and the file's columns.

  Raises:
    ValueError: naming the row, for a mutation that does not fit its wild
      type (wrong letter, position outside the protein), bad syntax, or an
      id that is not a scored protein.
  """
  delimiter = "\t" if sources.strip_gz(path).endswith(".tsv") else ","
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"No such variants file: {path}")
  with sources.open_text(path) as f:
    reader = csv.DictReader(f, delimiter=delimiter)
    columns = list(reader.fieldnames or [])
    mutant_column = next((c for c in MUTANT_COLUMNS if c in columns), None)
    if mutant_column is None:
      raise ValueError(
          f"{path}: no column {' or '.join(MUTANT_COLUMNS)} among {columns}."
      )
    if ID not in columns and len(proteins) + len(skipped) != 1:
      raise ValueError(
          f"{path}: no `id` column naming the wild type, and the input "
          f"holds {len(proteins) + len(skipped)} proteins, not one."
      )
    variants = []
    for row, fields in enumerate(reader, start=2):
      protein_id = (
          fields.get(ID) if ID in columns else next(iter([*proteins, *skipped]))
      )
      where = f"{path} row {row}"
      if protein_id in skipped:
        raise ValueError(
            f"{where}: the wild type {protein_id!r} is not scored "
            f"({skipped[protein_id]})."
        )
      if protein_id not in proteins:
        raise ValueError(f"{where}: no protein {protein_id!r} in the input.")
      text = fields.get(mutant_column) or ""
      try:
        mutations = parse_mutations(text)
        check_mutations(proteins[protein_id], mutations)
        variant_window(len(proteins[protein_id]), mutations, window)
      except ValueError as e:
        raise ValueError(f"{where} ({protein_id}): {e}.") from e
      if len(mutations) > vocabularies.NUM_SENTINELS:
        raise ValueError(
            f"{where}: {len(mutations)} mutations, more than the "
            f"{vocabularies.NUM_SENTINELS} sentinels."
        )
      variants.append(Variant(row, protein_id, mutations, fields))
  return variants, columns


# ---------------------------------------------------------------- command


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m ankh3_tasks.score",
      description=(
          "Scores proteins (pseudo-log-likelihood, completion likelihood) "
          "and variants (masked marginals) with an Ankh3 checkpoint."
      ),
  )
  parser.add_argument("--checkpoint", required=True, help="checkpoint_N dir")
  parser.add_argument("--gin_file", required=True, help="model gin file")
  parser.add_argument("--gin_search_paths", default="", help="comma-separated")
  parser.add_argument("--input", required=True, help="FASTA, CSV, TSV, ...")
  parser.add_argument("--output", required=True, help=".tsv or .json")
  parser.add_argument(
      "--completion",
      action="store_true",
      help="also log p(rest | first part) with [S2S]",
  )
  parser.add_argument(
      "--prefix_fraction",
      type=float,
      default=PREFIX_FRACTION,
      help="share of each protein the encoder reads for --completion",
  )
  parser.add_argument(
      "--variants", help="CSV/TSV with `mutant` (A23G:L50P) and `id`"
  )
  parser.add_argument("--variants_output", help=".tsv or .json")
  parser.add_argument(
      "--variant_pll",
      action="store_true",
      help=(
          "also the pseudo-log-likelihood of each mutant minus the wild type's"
      ),
  )
  parser.add_argument("--max_length", type=int, default=MAX_LENGTH)
  parser.add_argument("--long", default=WINDOW, choices=(WINDOW, REFUSE))
  parser.add_argument(
      "--batch_tokens",
      type=int,
      help=(
          f"ids per device call (default {BATCH_TOKENS_CPU} on CPU, "
          f"{BATCH_TOKENS} on accelerators)"
      ),
  )
  parser.add_argument("--pad_multiple", type=int, default=PAD_MULTIPLE)
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the command line; returns the exit status."""
  args = _parse_args(sys.argv[1:] if argv is None else argv)
  check_output(args.output)  # Checked before any work.
  if bool(args.variants) != bool(args.variants_output):
    raise ValueError("--variants and --variants_output go together.")
  if args.variants_output:
    check_output(args.variants_output)
  if args.variant_pll and not args.variants:
    raise ValueError("--variant_pll needs --variants.")
  if args.completion and not 0.0 < args.prefix_fraction < 1.0:
    raise ValueError(
        f"--prefix_fraction must be in (0, 1), got {args.prefix_fraction}."
    )
  logging.set_verbosity(logging.INFO)
  logging.use_absl_handler()
  records, stats = read_proteins(args.input)
  model, params = embed.load_checkpoint(
      args.checkpoint,
      args.gin_file,
      [p for p in args.gin_search_paths.split(",") if p],
  )
  scorer = Scorer(
      model,
      params,
      max_length=args.max_length,
      long=args.long,
      batch_tokens=args.batch_tokens,
      pad_multiple=args.pad_multiple,
  )
  rows, refused = [], []
  for record_id, sequence, reason in records:
    if not reason:
      reason = problem(sequence, scorer.vocabulary, args.max_length, args.long)
      if reason:
        refused.append((record_id, reason))
        logging.warning("Not scored %r: %s.", record_id, reason)
    rows.append({
        ID: record_id,
        LENGTH: len(sequence) if sequence is not None else None,
        SKIPPED: reason or None,
        "_sequence": sequence,
    })
  good = {r[ID]: r["_sequence"] for r in rows if not r[SKIPPED]}
  variants, variant_columns = [], []
  if args.variants:
    variants, variant_columns = read_variants(
        args.variants,
        good,
        {r[ID]: r[SKIPPED] for r in rows if r[SKIPPED]},
        scorer.window,
    )
  mutants = sorted({
      apply_mutations(good[v.protein_id], v.mutations)
      for v in variants
      if args.variant_pll
  })
  total = sum(len(s) for s in good.values()) + sum(len(s) for s in mutants)
  total += len(good) * args.completion
  total += sum(1 for v in variants if v.mutations)
  import tqdm  # pylint: disable=g-import-not-at-top

  begin = time.time()
  with tqdm.tqdm(
      total=total, desc="scoring", unit="rows", **progress.bar_options()
  ) as bar:
    scorer.progress = bar.update
    names = list(good)
    sequences = [good[n] for n in names]
    by_id = {r[ID]: r for r in rows}
    for name, values in zip(names, scorer.pseudo_log_likelihoods(sequences)):
      by_id[name][PLL] = float(values.sum())
      by_id[name][PLL_PER_RESIDUE] = float(values.mean())
    if args.completion:
      for name, (prefix, values) in zip(
          names,
          scorer.completion_log_likelihoods(sequences, args.prefix_fraction),
      ):
        by_id[name][COMPLETION_PREFIX] = prefix
        by_id[name][COMPLETION] = float(values.sum())
        by_id[name][COMPLETION_PER_RESIDUE] = float(values.mean())
    variant_rows = []
    if variants:
      scores = {}
      for protein_id in dict.fromkeys(v.protein_id for v in variants):
        mine = [v for v in variants if v.protein_id == protein_id]
        for v, s in zip(
            mine,
            scorer.masked_marginals(
                good[protein_id], [v.mutations for v in mine]
            ),
        ):
          scores[v.row] = s
      mutant_pll = {}
      if mutants:
        mutant_pll = {
            m: float(v.sum())
            for m, v in zip(mutants, scorer.pseudo_log_likelihoods(mutants))
        }
      for v in variants:
        out = {**v.fields, MASKED_MARGINAL: scores[v.row]}
        if args.variant_pll:
          mutant = apply_mutations(good[v.protein_id], v.mutations)
          out[PLL_DIFFERENCE] = mutant_pll[mutant] - by_id[v.protein_id][PLL]
        variant_rows.append(out)
  seconds = time.time() - begin
  columns = [ID, LENGTH, PLL, PLL_PER_RESIDUE]
  if args.completion:
    columns += [COMPLETION_PREFIX, COMPLETION, COMPLETION_PER_RESIDUE]
  write_rows(args.output, columns + [SKIPPED], rows)
  if variants:
    extra = [MASKED_MARGINAL] + [PLL_DIFFERENCE] * args.variant_pll
    write_rows(args.variants_output, variant_columns + extra, variant_rows)
  print(stats.summary())
  if refused:
    shown = ", ".join(f"{i} ({r})" for i, r in refused[:10])
    more = f" and {len(refused) - 10} more" if len(refused) > 10 else ""
    print(f"not scored {len(refused)}: {shown}{more}")
  windowed = [i for i, s in good.items() if len(s) > scorer.window]
  if windowed:
    print(
        f"{len(windowed)} longer than max_length - 2 = {scorer.window}, "
        f"scored in windows of {scorer.window} residues: "
        + ", ".join(windowed[:10])
        + (f" and {len(windowed) - 10} more" if len(windowed) > 10 else "")
    )
  residues = sum(len(s) for s in good.values())
  print(
      f"scored {len(good)} proteins ({residues} residues)"
      + (f" and {len(variants)} variants" if variants else "")
      + f" in {seconds:.1f} s into {args.output}"
      + (f" and {args.variants_output}" if variants else "")
  )
  return 0


if __name__ == "__main__":
  sys.exit(cli.run(main))
