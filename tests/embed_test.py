"""Tests of `ankh3_tasks.embed` (marker `t5x`; CLI on a checkpoint: slow)."""

import os

import numpy as np
import pytest

from conftest import REPO
from conftest import init_params
from conftest import run_module
from conftest import small_ankh3_model
from conftest import write_fasta

pytestmark = pytest.mark.t5x

RNG = np.random.default_rng(0)
LETTERS = "ALGVSREDTIPKFQNYMHWC"


def _protein(length):
  return "".join(RNG.choice(list(LETTERS), size=length))


@pytest.fixture(scope="module")
def tiny():
  """A randomly initialised small Ankh3 and its params."""
  model = small_ankh3_model()
  params = init_params(model)
  return model, params


def _by_hand(model, params, sequence, task="[NLU]"):
  """The encoder output of one protein, unpadded, task token and </s> cut."""
  vocab = model.input_vocabulary
  tokens = np.array([vocab.encode(task + sequence) + [vocab.eos_id]])
  out = model.module.apply(
      {"params": params},
      tokens,
      method=model.module.encode,
      enable_dropout=False,
  )
  return np.asarray(out)[0, 1:-1]


def test_one_row_per_residue_equal_to_the_encoder_by_hand(tiny):
  from ankh3_tasks import embed  # pylint: disable=g-import-not-at-top

  model, params = tiny
  proteins = ["MKTAYIAK", "mkt ay*", _protein(70)]
  result = embed.embed_sequences(model, params, proteins)
  assert [r.shape for r in result] == [(8, 32), (5, 32), (70, 32)]
  assert all(r.dtype == np.float32 for r in result)
  np.testing.assert_allclose(
      result[0], _by_hand(model, params, "MKTAYIAK"), atol=1e-5
  )
  np.testing.assert_allclose(
      result[2], _by_hand(model, params, proteins[2]), atol=1e-5
  )


def test_task_tokens_give_different_embeddings(tiny):
  from ankh3_tasks import embed  # pylint: disable=g-import-not-at-top

  model, params = tiny
  nlu, s2s = (
      embed.embed_sequences(model, params, ["MKTAYIAK"], task_token=t)[0]
      for t in ("NLU", "S2S")
  )
  assert np.abs(nlu - s2s).max() > 1e-3
  np.testing.assert_allclose(
      s2s, _by_hand(model, params, "MKTAYIAK", "[S2S]"), atol=1e-5
  )
  with pytest.raises(ValueError, match="NLU or S2S"):
    embed.embed_sequences(model, params, ["MK"], task_token="NLG")


def test_batching_and_padding_do_not_change_results(tiny):
  from ankh3_tasks import embed  # pylint: disable=g-import-not-at-top

  model, params = tiny
  proteins = [_protein(n) for n in (9, 130, 40, 3, 75, 9, 200)]
  alone = [
      embed.embed_sequences(model, params, [p], batch_size=1)[0]
      for p in proteins
  ]
  for batch_size, pad_multiple in ((8, 64), (3, 8), (2, 1)):
    together = embed.embed_sequences(
        model,
        params,
        proteins,
        batch_size=batch_size,
        pad_multiple=pad_multiple,
    )
    for a, b in zip(alone, together):
      np.testing.assert_allclose(a, b, atol=1e-5)


def test_windows_cover_the_protein_with_overlap():
  from ankh3_tasks import embed  # pylint: disable=g-import-not-at-top

  assert embed.windows(10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
  assert embed.windows(4, 4, 1) == [(0, 4)]
  assert embed.windows(11, 4, 1) == [(0, 4), (3, 7), (6, 10), (7, 11)]
  for length in range(1, 60):
    spans = embed.windows(length, 16, 5)
    assert spans[0][0] == 0 and spans[-1][1] == length
    for (_, end), (start, _) in zip(spans, spans[1:]):
      assert end - start >= 5
    pieces = embed._pieces(spans)  # pylint: disable=protected-access
    assert [p for piece in pieces for p in range(*piece)] == list(range(length))
  with pytest.raises(ValueError, match="overlap=16, window=16"):
    embed.windows(40, 16, 16)


def test_long_protein_is_chunked_one_row_per_residue(tiny):
  from ankh3_tasks import embed  # pylint: disable=g-import-not-at-top

  model, params = tiny
  protein = _protein(50)
  # max_length 18: windows of 16 residues, (0,16) (12,28) (24,40) (34,50).
  rows = embed.embed_sequences(
      model, params, [protein], max_length=18, overlap=4
  )[0]
  assert rows.shape == (50, 32)
  spans = embed.windows(50, 16, 4)
  assert spans == [(0, 16), (12, 28), (24, 40), (34, 50)]
  # Residues 0-11 are in the first window only, 16-23 in the second only...
  alone = [_by_hand(model, params, protein[s:e]) for s, e in spans]
  np.testing.assert_allclose(rows[0:12], alone[0][0:12], atol=1e-5)
  np.testing.assert_allclose(rows[16:24], alone[1][4:12], atol=1e-5)
  np.testing.assert_allclose(rows[40:50], alone[3][6:16], atol=1e-5)
  # ... and an overlap is split in its middle: 12-13 left, 14-15 right.
  np.testing.assert_allclose(rows[12:14], alone[0][12:14], atol=1e-5)
  np.testing.assert_allclose(rows[14:16], alone[1][2:4], atol=1e-5)
  # Context differs between windows, so the split is visible.
  assert np.abs(alone[0][14:16] - alone[1][2:4]).max() > 1e-4
  with pytest.raises(ValueError, match="Sequence 1 has 50 residues"):
    embed.embed_sequences(
        model, params, ["MK", protein], max_length=18, long="refuse"
    )


def test_bad_sequences_are_rejected_by_the_api(tiny):
  from ankh3_tasks import embed  # pylint: disable=g-import-not-at-top

  model, params = tiny
  with pytest.raises(ValueError, match="Sequence 1: invalid characters"):
    embed.embed_sequences(model, params, ["MK", "MK-1"])


def test_safe_keys():
  from ankh3_tasks import embed  # pylint: disable=g-import-not-at-top

  assert embed.safe_key("sp|P69905|HBA_HUMAN") == "sp|P69905|HBA_HUMAN"
  assert embed.safe_key("a/b c") == "a_b_c"
  assert embed.safe_key("") == "_"


@pytest.fixture
def fake_checkpoint(tiny, monkeypatch):
  """Makes the CLI use the small random model instead of a checkpoint."""
  from ankh3_tasks import checkpoints  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import embed  # pylint: disable=g-import-not-at-top

  model, params = tiny
  monkeypatch.setattr(embed, "load_model", lambda *a, **k: model)
  monkeypatch.setattr(checkpoints, "load_params", lambda path: params)
  return model, params


def _cli(tmp_path, records, *flags, output="emb.npz"):
  from ankh3_tasks import embed  # pylint: disable=g-import-not-at-top

  fasta = write_fasta(tmp_path / "in.fasta", records)
  out = str(tmp_path / output)
  argv = ["--checkpoint=unused", "--gin_file=unused", f"--input={fasta}"]
  assert embed.main([*argv, f"--output={out}", *flags]) == 0
  return out


def test_cli_counts_bad_records_and_refused_ones(
    tmp_path, fake_checkpoint, capsys
):
  model, params = fake_checkpoint
  long_protein = _protein(40)
  records = [
      ("p1 first", ["MKTAY", "IAK"]),
      ("bad1", ["MK-1"]),
      ("empty", []),
      ("long", [long_protein]),
      ("a/b", ["GGHW"]),
  ]
  out = _cli(tmp_path, records, "--long=refuse", "--max_length=18")
  printed = capsys.readouterr().out
  assert "read 5, kept 3, skipped 2" in printed
  assert "invalid characters: 1" in printed
  assert "header without sequence: 1" in printed
  assert "refused 1" in printed and "long (40 residues)" in printed
  assert "embedded 2 proteins (12 residues)" in printed
  with np.load(out) as data:
    assert list(data["ids"]) == ["p1", "a/b"]
    assert list(data["keys"]) == ["p1", "a_b"]
    assert list(data["lengths"]) == [8, 4]
    assert sorted(data.files) == sorted([
        "ids",
        "keys",
        "lengths",
        "per_residue/p1",
        "per_residue/a_b",
        "mean/p1",
        "mean/a_b",
    ])
    np.testing.assert_allclose(
        data["per_residue/p1"], _by_hand(model, params, "MKTAYIAK"), atol=1e-5
    )
    np.testing.assert_allclose(
        data["mean/a_b"], data["per_residue/a_b"].mean(axis=0), atol=1e-6
    )


def test_cli_chunks_by_default_and_writes_pooled_float16(
    tmp_path, fake_checkpoint
):
  del fake_checkpoint
  records = [("long", [_protein(40)]), ("short", ["MKT"])]
  out = _cli(
      tmp_path,
      records,
      "--max_length=18",
      "--overlap=4",
      "--pooled_only",
      "--dtype=float16",
  )
  with np.load(out) as data:
    assert "per_residue/long" not in data.files
    assert data["mean/long"].shape == (32,)
    assert data["mean/long"].dtype == np.float16
    assert list(data["lengths"]) == [40, 3]


def test_cli_writes_hdf5(tmp_path, fake_checkpoint):
  h5py = pytest.importorskip("h5py")
  del fake_checkpoint
  out = _cli(tmp_path, [("x", ["MKTAY"])], output="emb.h5")
  with h5py.File(out, "r") as f:
    assert f["per_residue"]["x"].shape == (5, 32)
    assert f["mean"]["x"].shape == (32,)
    assert [i.decode() for i in f["ids"][:]] == ["x"]


def test_cli_stops_on_duplicate_ids(tmp_path, fake_checkpoint):
  del fake_checkpoint
  records = [("p1", ["MK"]), ("p2", ["MK"]), ("p1 again", ["MK"])]
  with pytest.raises(ValueError, match=r"p1: \['p1', 'p1'\]"):
    _cli(tmp_path, records)
  with pytest.raises(ValueError, match=r"a_b: \['a/b', 'a#b'\]"):
    _cli(tmp_path, [("a/b", ["MK"]), ("a#b", ["MK"])])


@pytest.mark.slow
def test_cli_on_a_real_checkpoint(tiny_checkpoint, tmp_path):
  checkpoint = tiny_checkpoint
  from ankh3_tasks import checkpoints  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import embed  # pylint: disable=g-import-not-at-top

  proteins = {"q1": "MKTAYIAKQRQISFVKSHFSRQ", "q2": _protein(300), "q3": "W"}
  fasta = write_fasta(
      tmp_path / "in.fasta",
      [(k, [v]) for k, v in proteins.items()] + [("bad", ["M1"])],
  )
  out = tmp_path / "emb.npz"
  run = run_module(
      "ankh3_tasks.embed",
      f"--checkpoint={checkpoint}",
      "--gin_file=gin/models/ankh3_tiny.gin",
      f"--input={fasta}",
      f"--output={out}",
      "--task_token=S2S",
      "--max_length=130",
  )
  assert "read 4, kept 3, skipped 1 (invalid characters: 1)" in run.stdout
  assert "'bad'" in run.stderr
  model = embed.load_model(os.path.join(REPO, "gin/models/ankh3_tiny.gin"))
  params = checkpoints.load_params(str(checkpoint))
  expected = embed.embed_sequences(
      model, params, list(proteins.values()), task_token="S2S", max_length=130
  )
  with np.load(out) as data:
    assert list(data["ids"]) == list(proteins)
    for (key, protein), rows in zip(proteins.items(), expected):
      got = data[f"per_residue/{key}"]
      assert got.shape == (len(protein), 128)
      np.testing.assert_allclose(got, rows, atol=1e-5)
      np.testing.assert_allclose(
          data[f"mean/{key}"], got.mean(axis=0), atol=1e-5
      )
    head = _by_hand(model, params, proteins["q1"], "[S2S]")
    np.testing.assert_allclose(data["per_residue/q1"], head, atol=1e-5)
