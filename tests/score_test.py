"""Tests of `ankh3_tasks.score` (model tests: marker `t5x`).

The batched scores are checked against references computed one masked
residue at a time through T5X's own `EncoderDecoderModel.score_batch`, with
the residue softmax taken by hand over the 25 residue letters.
"""

import functools
import json
import os

import numpy as np
import pytest

from conftest import REPO
from conftest import init_params
from conftest import small_ankh3_model
from conftest import write_fasta

RNG = np.random.default_rng(0)
LETTERS = "ALGVSREDTIPKFQNYMHWC"


def _protein(length):
  return "".join(RNG.choice(list(LETTERS), size=length))


# ---------------------------------------------------------------- mutations


def test_parse_mutations_sorted_and_checked():
  from ankh3_tasks import score  # pylint: disable=g-import-not-at-top

  M = score.Mutation
  assert score.parse_mutations("l50p:A23G") == [
      M("A", 23, "G"),
      M("L", 50, "P"),
  ]
  assert str(score.parse_mutations(" K2A ")[0]) == "K2A"
  assert not score.parse_mutations("")
  for bad, message in [
      ("A23", "not a substitution"),
      ("A23G:L23P", "mutated twice"),
      ("J5A", "not a residue"),
      ("A5-", "not a substitution"),
  ]:
    with pytest.raises(ValueError, match=message):
      score.parse_mutations(bad)
  assert score.apply_mutations("MKT", [M("K", 2, "A"), M("T", 3, "W")]) == "MAW"
  with pytest.raises(ValueError, match="position 2 is K, not A"):
    score.check_mutations("MKT", [M("A", 2, "G")])
  with pytest.raises(ValueError, match="outside 1..3"):
    score.check_mutations("MKT", [M("A", 4, "G")])


# ----------------------------------------------------------- model, by hand


@pytest.fixture(scope="module")
def tiny():
  """A randomly initialised small Ankh3 and its params."""
  import jax  # pylint: disable=g-import-not-at-top

  model = small_ankh3_model()
  # Compiled: about half the time of running the initialisation eagerly.
  return model, jax.jit(lambda: init_params(model))()


@functools.lru_cache(maxsize=None)
def _score_batch(model):
  """T5X's `model.score_batch`, compiled (fewer seconds than eagerly)."""
  import jax  # pylint: disable=g-import-not-at-top

  return jax.jit(model.score_batch)


def _residue_ids(vocab):
  return [
      i
      for i, t in enumerate(vocab.tokens)
      if len(t) == 1 and t in "OLAGSVERTIDPKNFQYHMCWXUZB"
  ]


def _next_residues(model, params, cases):
  """{residue id: log p} of the decoder's next token over the 25 residues.

  `cases`: (encoder ids, decoder targets so far). One `score_batch` call:
  a row per case and residue, targets `prefix + [residue]`, the loss
  weight on that last target only; rows padded with 0, which T5X masks.
  """
  candidates = _residue_ids(model.input_vocabulary)
  width = max(len(e) for e, _ in cases)
  length = max(len(p) for _, p in cases) + 1
  rows = len(cases) * len(candidates)
  encoder = np.zeros((rows, width), np.int32)
  targets = np.zeros((rows, length), np.int32)
  weights = np.zeros((rows, length), np.float32)
  row = 0
  for ids, prefix in cases:
    for r in candidates:
      encoder[row, : len(ids)] = ids
      targets[row, : len(prefix) + 1] = prefix + [r]
      weights[row, len(prefix)] = 1
      row += 1
  batch = {
      "encoder_input_tokens": encoder,
      "decoder_input_tokens": np.concatenate(
          [np.zeros((rows, 1), np.int32), targets[:, :-1]], axis=1
      ),
      "decoder_target_tokens": targets,
      "decoder_loss_weights": weights,
  }
  scores = np.asarray(_score_batch(model)(params, batch), np.float64)
  scores = scores.reshape(len(cases), len(candidates))
  return [
      dict(zip(candidates, row - np.logaddexp.reduce(row))) for row in scores
  ]


def _masked(vocab, sequence, positions):
  """[NLU] sequence </s>, 0-based `positions` -> <extra_id_0>, _1, ..."""
  ids = vocab.encode(sequence)
  for k, p in enumerate(positions):
    ids[p] = vocab.sentinel_id(k)
  return [vocab.token_id("[NLU]"), *ids, vocab.eos_id]


def _plls_by_hand(model, params, sequences):
  """log p of each residue, masked alone (one row per residue)."""
  vocab = model.input_vocabulary
  s0 = vocab.sentinel_id(0)
  cases = [
      (_masked(vocab, sequence, [i]), [s0])
      for sequence in sequences
      for i in range(len(sequence))
  ]
  found = iter(_next_residues(model, params, cases))
  return [
      np.array([next(found)[vocab.token_id(r)] for r in sequence])
      for sequence in sequences
  ]


def _marginals_by_hand(model, params, sequence, variants):
  """Sums of log p(mut) - log p(wt), positions masked together, by hand."""
  vocab = model.input_vocabulary
  cases, signs = [], []
  for mutations in variants:
    encoder = _masked(vocab, sequence, [m.position - 1 for m in mutations])
    for k, m in enumerate(mutations):
      for sign, letters, letter in (
          (1, [x.mutant for x in mutations], m.mutant),
          (-1, [x.wild_type for x in mutations], m.wild_type),
      ):
        prefix = []
        for j in range(k):
          prefix += [vocab.sentinel_id(j), vocab.token_id(letters[j])]
        cases.append((encoder, prefix + [vocab.sentinel_id(k)]))
        signs.append((sign, vocab.token_id(letter)))
  found = iter(_next_residues(model, params, cases))
  values = iter(sign * next(found)[letter] for sign, letter in signs)
  return [sum(next(values) for _ in range(2 * len(v))) for v in variants]


@pytest.mark.t5x
def test_pseudo_log_likelihood_equals_one_residue_at_a_time(tiny):
  from ankh3_tasks import score  # pylint: disable=g-import-not-at-top

  model, params = tiny
  proteins = ["W", "MKTAYIAK", _protein(40)]
  # Small batches: several calls per bucket, rows of proteins mixed.
  scorer = score.Scorer(model, params, batch_tokens=500, pad_multiple=16)
  result = scorer.pseudo_log_likelihoods(proteins)
  assert [r.shape for r in result] == [(1,), (8,), (40,)]
  for got, expected in zip(result, _plls_by_hand(model, params, proteins)):
    np.testing.assert_allclose(got, expected, atol=2e-5)
  # Every value is a log-probability over the residues, not a constant.
  assert all((r < 0).all() for r in result)
  assert np.ptp(result[2]) > 1e-3
  # Cleaned as proteins are read: case, whitespace, a final `*`.
  again = scorer.pseudo_log_likelihoods(
      ["w", "mkta yiak*", proteins[2].lower()]
  )
  np.testing.assert_allclose(again[1], result[1], atol=1e-5)


@pytest.mark.t5x
def test_masked_marginals_equal_hand_computed_ones(tiny):
  from ankh3_tasks import score  # pylint: disable=g-import-not-at-top

  model, params = tiny
  wild_type = "MKTAYIAKQRQ"
  variants = [score.parse_mutations(v) for v in ["A4G", "M1L:Q11W", "", "T3T"]]
  scorer = score.Scorer(model, params)
  got = scorer.masked_marginals(wild_type, variants)
  expected = _marginals_by_hand(model, params, wild_type, variants)
  np.testing.assert_allclose(got, expected, atol=2e-5)
  assert got[2] == 0.0 and abs(got[3]) < 1e-6 and abs(got[0]) > 1e-4
  with pytest.raises(ValueError, match="Variant 1: A2G: position 2 is K"):
    scorer.masked_marginals(wild_type, [[], score.parse_mutations("A2G")])


@pytest.mark.t5x
def test_completion_is_log_p_of_the_rest_given_the_first_half(tiny):
  from ankh3_tasks import preprocessors  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import score  # pylint: disable=g-import-not-at-top

  model, params = tiny
  vocab = model.input_vocabulary
  proteins = ["MKTAYIAK", "W", _protein(7)]
  got = score.Scorer(model, params).completion_log_likelihoods(proteins)
  cuts = [
      preprocessors.prefix_length(len(p), 0.5, keep_target=True)
      for p in proteins
  ]
  # T5X's scores of the three rows in one padded batch (0 is masked).
  batch = {
      k: np.zeros((3, 12), np.int32)
      for k in ("encoder_input_tokens", "decoder_input_tokens")
  }
  batch["decoder_target_tokens"] = np.zeros((3, 12), np.int32)
  for i, (protein, cut) in enumerate(zip(proteins, cuts)):
    encoder = vocab.encode("[S2S]" + protein[:cut]) + [vocab.eos_id]
    rest = vocab.encode(protein[cut:])
    batch["encoder_input_tokens"][i, : len(encoder)] = encoder
    batch["decoder_input_tokens"][i, : len(rest)] = [0] + rest[:-1]
    batch["decoder_target_tokens"][i, : len(rest)] = rest
  batch["decoder_loss_weights"] = (batch["decoder_target_tokens"] > 0) * 1.0
  expected = np.asarray(_score_batch(model)(params, batch))
  for (prefix, values), cut, protein, want in zip(
      got, cuts, proteins, expected
  ):
    assert prefix == cut and len(values) == len(protein) - cut
    np.testing.assert_allclose(values.sum(), want, atol=2e-5)
  assert [p for p, _ in got] == [4, 0, 3]


@pytest.mark.t5x
def test_api_rejects_what_is_not_a_scorable_protein(tiny):
  from ankh3_tasks import score  # pylint: disable=g-import-not-at-top

  model, params = tiny
  scorer = score.Scorer(model, params, max_length=10, long="refuse")
  for bad, message in [
      ("MK1", "Sequence 1: invalid characters '1'"),
      ("", "Sequence 1: empty sequence"),
      ("A" * 9, r"Sequence 1: longer than max_length - 2 = 8 \(9 residues\)"),
  ]:
    with pytest.raises(ValueError, match=message):
      scorer.pseudo_log_likelihoods(["MK", bad])
  with pytest.raises(ValueError, match=r"in \(0, 1\)"):
    scorer.completion_log_likelihoods(["MK"], prefix_fraction=1.0)


@pytest.mark.t5x
def test_long_proteins_are_scored_in_windows_centred_on_each_residue(tiny):
  from ankh3_tasks import score  # pylint: disable=g-import-not-at-top

  model, params = tiny
  protein = _protein(20)
  scorer = score.Scorer(model, params, max_length=10)  # 8 residues a row
  assert [score.window_start(20, i, 8) for i in (0, 4, 5, 11, 19)] == [
      0,
      0,
      1,
      7,
      12,
  ]
  long, *windows = scorer.pseudo_log_likelihoods(
      [protein, protein[:8], protein[5:13], protein[12:]]
  )
  np.testing.assert_allclose(long[:5], windows[0][:5], atol=1e-5)
  np.testing.assert_allclose(long[9], windows[1][4], atol=1e-5)
  np.testing.assert_allclose(long[16:], windows[2][4:], atol=1e-5)
  # A variant is scored in the window centred on its mutated positions.
  parse = score.parse_mutations
  far = f"{protein[14]}15A"
  got = scorer.masked_marginals(protein, [parse(far)])
  alone = scorer.masked_marginals(protein[10:18], [parse(f"{protein[14]}5A")])
  np.testing.assert_allclose(got, alone, atol=1e-5)
  with pytest.raises(ValueError, match="span more than max_length - 2 = 8"):
    scorer.masked_marginals(protein, [parse(f"{protein[1]}2A:{far}")])


# ---------------------------------------------------------------- command


@pytest.fixture
def fake_checkpoint(tiny, monkeypatch):
  """Makes the command use the small random model instead of a checkpoint."""
  from ankh3_tasks import embed  # pylint: disable=g-import-not-at-top

  monkeypatch.setattr(embed, "load_checkpoint", lambda *a, **k: tiny)
  return tiny


def _cli(tmp_path, records, *flags, output="scores.tsv"):
  from ankh3_tasks import score  # pylint: disable=g-import-not-at-top

  fasta = write_fasta(tmp_path / "in.fasta", records)
  out = str(tmp_path / output)
  argv = ["--checkpoint=unused", "--gin_file=unused", f"--input={fasta}"]
  assert score.main([*argv, f"--output={out}", *flags]) == 0
  return score.read_rows(out)


@pytest.mark.t5x
def test_cli_reports_every_bad_record_by_id(tmp_path, fake_checkpoint, capsys):
  from ankh3_tasks import score  # pylint: disable=g-import-not-at-top

  model, params = fake_checkpoint
  records = [
      ("p1 first", ["MKTAY", "IAK"]),
      ("bad", ["MK-J"]),
      ("empty", []),
      ("long", [_protein(20)]),
      ("p2", ["GGHW"]),
  ]
  rows = _cli(
      tmp_path, records, "--max_length=12", "--long=refuse", "--completion"
  )
  printed = capsys.readouterr().out
  assert [r["id"] for r in rows] == ["p1", "bad", "empty", "long", "p2"]
  assert [r["skipped"] for r in rows] == [
      None,
      "invalid characters '-J'",
      "header without sequence",
      "longer than max_length - 2 = 10 (20 residues)",
      None,
  ]
  assert rows[3]["length"] == "20" and rows[1]["length"] is None
  assert rows[1]["pseudo_log_likelihood"] is None
  expected = score.Scorer(model, params).pseudo_log_likelihoods(
      ["MKTAYIAK", "GGHW"]
  )
  for row, values in zip([rows[0], rows[4]], expected):
    assert float(row["pseudo_log_likelihood"]) == pytest.approx(
        values.sum(), abs=1e-5
    )
    assert float(row["pseudo_log_likelihood_per_residue"]) == pytest.approx(
        values.mean(), abs=1e-5
    )
  assert rows[0]["completion_prefix_length"] == "4"
  assert float(rows[0]["completion_log_likelihood"]) < 0
  assert "read 5, kept 3, skipped 2" in printed
  assert "not scored 1: long (longer than max_length - 2 = 10" in printed
  assert "scored 2 proteins (12 residues)" in printed


@pytest.mark.t5x
def test_cli_stops_on_duplicate_ids(tmp_path, fake_checkpoint):
  del fake_checkpoint
  records = [("p1", ["MK"]), ("p2", ["MK"]), ("p1 again", ["MKT"])]
  with pytest.raises(ValueError, match=r"duplicate ids\): \['p1'\]"):
    _cli(tmp_path, records)


@pytest.mark.t5x
def test_cli_scores_variants_and_names_a_bad_row(tmp_path, fake_checkpoint):
  from ankh3_tasks import score  # pylint: disable=g-import-not-at-top

  model, params = fake_checkpoint
  records = [("wt", ["MKTAYIAKQRQ"]), ("other", ["GGHW"])]
  variants = tmp_path / "variants.csv"
  variants.write_text(
      "id,mutant,fitness\nwt,A4G,0.5\nwt,M1L:K2A,1.5\nother,H3Y,2\nwt,,1\n"
  )
  out = tmp_path / "variants.json"
  flags = [f"--variants={variants}", f"--variants_output={out}"]
  proteins = _cli(tmp_path, records, *flags, "--variant_pll")
  with open(out) as f:
    rows = json.load(f)
  assert [r["fitness"] for r in rows] == ["0.5", "1.5", "2", "1"]
  assert list(rows[0]) == [
      "id",
      "mutant",
      "fitness",
      "masked_marginal",
      "pseudo_log_likelihood_difference",
  ]
  scorer = score.Scorer(model, params)
  parse = score.parse_mutations
  expected = scorer.masked_marginals(
      "MKTAYIAKQRQ", [parse("A4G"), parse("M1L:K2A"), []]
  ) + scorer.masked_marginals("GGHW", [parse("H3Y")])
  got = [rows[i]["masked_marginal"] for i in (0, 1, 3, 2)]
  np.testing.assert_allclose(got, expected, atol=1e-5)
  mutant = scorer.pseudo_log_likelihoods(["GGYW"])[0].sum()
  wild = float(proteins[1]["pseudo_log_likelihood"])
  assert rows[2]["pseudo_log_likelihood_difference"] == pytest.approx(
      mutant - wild, abs=1e-4
  )
  assert rows[3]["pseudo_log_likelihood_difference"] == pytest.approx(
      0.0, abs=1e-4
  )
  # A wrong wild-type letter stops the run before scoring, naming the row.
  variants.write_text("id,mutant\nwt,A4G\nwt,M1L:A2G\n")
  with pytest.raises(
      ValueError, match=r"variants.csv row 3 \(wt\): A2G: position 2 is K"
  ):
    _cli(tmp_path, records, *flags)
  variants.write_text("id,mutant\nnope,A4G\n")
  with pytest.raises(ValueError, match=r"row 2: no protein 'nope'"):
    _cli(tmp_path, records, *flags)
  # Without an `id` column, the input must hold one protein.
  variants.write_text("mutant\nA4G\n")
  rows = _cli(tmp_path, records[:1], *flags)
  with open(out) as f:
    assert json.load(f)[0]["masked_marginal"] == pytest.approx(expected[0])
  with pytest.raises(ValueError, match="no `id` column"):
    _cli(tmp_path, records, *flags)


# ------------------------------------------------- the embedded default

TINY_GIN = os.path.join(REPO, "gin", "models", "ankh3_tiny.gin")


@pytest.fixture(scope="module")
def default_model(tiny_checkpoint):
  """The embedded default's model and parameters (step 300)."""
  from ankh3_tasks import embed  # pylint: disable=g-import-not-at-top

  return embed.load_checkpoint(str(tiny_checkpoint), TINY_GIN)


@pytest.mark.t5x
@pytest.mark.slow
def test_cli_on_the_embedded_default(
    tiny_checkpoint, default_model, tmp_path, capsys
):
  from ankh3_tasks import score  # pylint: disable=g-import-not-at-top

  proteins = {"q1": "MKTAYIAKQRQISFVKSHFSRQ", "q2": _protein(45), "q3": "W"}
  fasta = write_fasta(
      tmp_path / "in.fasta", [(k, [v]) for k, v in proteins.items()]
  )
  variants = tmp_path / "v.csv"
  variants.write_text("id,mutant\nq1,A4G\nq1,M1L:K2A\n")
  out, variants_out = tmp_path / "s.tsv", tmp_path / "v.tsv"
  assert (
      score.main([
          f"--checkpoint={tiny_checkpoint}",
          f"--gin_file={TINY_GIN}",
          f"--input={fasta}",
          f"--output={out}",
          f"--variants={variants}",
          f"--variants_output={variants_out}",
      ])
      == 0
  )
  printed = capsys.readouterr().out
  assert "scored 3 proteins (68 residues) and 2 variants" in printed
  scorer = score.Scorer(*default_model)
  rows = score.read_rows(str(out))
  for row, values in zip(
      rows, scorer.pseudo_log_likelihoods(list(proteins.values()))
  ):
    assert float(row["pseudo_log_likelihood"]) == pytest.approx(
        values.sum(), abs=1e-4
    )
  got = [
      float(r["masked_marginal"]) for r in score.read_rows(str(variants_out))
  ]
  expected = scorer.masked_marginals(
      proteins["q1"], [score.parse_mutations(v) for v in ("A4G", "M1L:K2A")]
  )
  np.testing.assert_allclose(got, expected, atol=1e-4)


# ------------------------------------------ parity with the Ankh library


def _client_matrix():
  """tools/client_matrix.py (issue 24), loaded by path: not a package."""
  import importlib.util  # pylint: disable=g-import-not-at-top

  spec = importlib.util.spec_from_file_location(
      "client_matrix", os.path.join(REPO, "tools", "client_matrix.py")
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.t5x
@pytest.mark.slow
def test_pseudo_likelihood_equals_the_ankh_library(
    tiny_checkpoint, default_model, tmp_path
):
  """The Ankh library's compute_pseudo_likelihood on the exported model."""
  pytest.importorskip("torch", reason="the export needs the hf extra")
  client_matrix = _client_matrix()
  venv = client_matrix.find_venv("4.57.6")
  if not venv or not client_matrix.built_with_ankh(venv):
    pytest.skip(
        "no side environment transformers-4.57.6 with the Ankh library in "
        f"{client_matrix.venvs_root()} (make it with `python "
        "tools/client_matrix.py build --client 4.57.6 --ankh_source DIR`)"
    )
  from ankh3_tasks import convert  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import score  # pylint: disable=g-import-not-at-top

  hf_dir = tmp_path / "hf"
  assert (
      convert.main([
          "t5x-to-hf",
          f"--checkpoint={tiny_checkpoint}",
          f"--gin_file={TINY_GIN}",
          f"--output={hf_dir}",
      ])
      == 0
  )
  proteins = {
      "q1": "MKTAYIAKQRQISFVKSHFSRQ",
      "q2": _protein(60),
      "q3": "W",
      "q4": "XBZUO" + _protein(10),
  }
  fasta = write_fasta(
      tmp_path / "in.fasta", [(k, [v]) for k, v in proteins.items()]
  )
  client = client_matrix.run_worker(
      venv, ["ankh-likelihood", f"--model_dir={hf_dir}", f"--fasta={fasta}"]
  )
  assert client.returncode == 0, client.stdout[-3000:] + client.stderr[-3000:]
  theirs = {
      p["id"]: p["pseudo_likelihood"]
      for p in json.loads(client.stdout)["proteins"]
  }
  ours = score.Scorer(*default_model).pseudo_log_likelihoods(
      list(proteins.values())
  )
  for name, values in zip(proteins, ours):
    # The library returns exp(mean log p); compare on both scales.
    assert np.exp(values.mean()) == pytest.approx(theirs[name], abs=1e-4)
    assert values.mean() == pytest.approx(np.log(theirs[name]), abs=1e-4)
