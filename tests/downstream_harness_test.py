"""Tests of the benchmark harness, its report and its command line, on
small synthetic tasks whose labels are a known function of the sequence."""

import json
import math
import os

import numpy as np
import pytest

from ankh3_tasks import vocabularies
from ankh3_tasks.downstream import __main__ as cli
from ankh3_tasks.downstream import formats
from ankh3_tasks.downstream import harness
from ankh3_tasks.downstream import report
from ankh3_tasks.downstream import synthetic

from conftest import REPO


def _embedding(sequence, rng, dim=24):
  """One-hot residue identity plus noise: what a pLM would encode, at best."""
  x = rng.normal(0, 0.1, (len(sequence), dim)).astype(np.float32)
  for i, residue in enumerate(sequence):
    x[i, synthetic.AMINO.index(residue)] += 1.0
  return x


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
  """Synthetic data in the public layouts, and an embeddings file."""
  root = tmp_path_factory.mktemp("bench")
  synthetic.write(str(root))
  rng = np.random.default_rng(0)
  fasta = root / "all.fasta"
  assert (
      cli.main([
          "--tasks=all",
          f"--data_dir={root}",
          f"--write_fasta={fasta}",
      ])
      == 0
  )
  arrays = {}
  lines = fasta.read_text().split()
  for header, sequence in zip(lines[::2], lines[1::2]):
    arrays[f"per_residue/{header[1:]}"] = _embedding(sequence, rng)
  np.savez(root / "emb.npz", **arrays)
  return root


SMALL = [
    "--epochs=8",
    "--warmup_steps=2",
    "--grad_accumulation=2",
    "--seeds=7,0",
    "--no_progress",
]


def _run(bench, out, *flags):
  assert (
      cli.main([
          "--tasks=ssp3,fluorescence",
          f"--data_dir={bench}",
          f"--embeddings=NLU={bench / 'emb.npz'}",
          f"--output_dir={out}",
          *SMALL,
          "--no_baseline",  # Tested on its own below.
          *flags,
      ])
      == 0
  )
  return json.loads((out / "results.json").read_text())


def test_cli_learns_synthetic_tasks_and_is_reproducible(bench, tmp_path):
  first = _run(bench, tmp_path / "a")
  nlu = first["results"]["NLU"]
  for test_set in ("casp12", "casp14"):
    accuracy = nlu["ssp3"]["summary"][test_set]["accuracy"]
    # Chance is about 0.4 (the largest class); the labels follow the residue.
    assert accuracy["mean"] > 0.9, accuracy
    assert len(accuracy["values"]) == 2
  spearman = nlu["fluorescence"]["summary"]["tape_fluorescence"]["spearman"]
  assert spearman["mean"] > 0.8, spearman
  assert [r["seed"] for r in nlu["ssp3"]["seeds"]] == [7, 0]
  assert len(nlu["ssp3"]["seeds"][0]["history"]) == 8
  assert nlu["ssp3"]["sizes"]["test/casp12"] == synthetic.SIZES["test"]

  again = _run(bench, tmp_path / "b")
  for run in (first, again):
    for result in run["results"]["NLU"].values():
      assert result.pop("seconds") > 0
  assert again["results"] == first["results"]  # Same seeds, same numbers.

  table = (tmp_path / "a" / "results.md").read_text()
  assert "| SSP3 | CASP12 | accuracy | " in table
  assert "Ankh3-XL [NLU]" in table and "0.8440" in table  # Published.
  assert (tmp_path / "a" / "learning_curves.png").stat().st_size > 10_000


def test_one_hot_baseline_runs_beside_every_setting(bench, tmp_path):
  out = tmp_path / "out"
  assert (
      cli.main([
          "--tasks=ssp3",
          f"--data_dir={bench}",
          f"--embeddings=NLU={bench / 'emb.npz'}",
          f"--output_dir={out}",
          "--epochs=2",
          "--warmup_steps=2",
          "--grad_accumulation=2",
          "--seeds=7,0",
          "--no_progress",
      ])
      == 0
  )
  run = json.loads((out / "results.json").read_text())
  assert set(run["results"]) == {"NLU", "one-hot"}
  assert run["settings"]["one_hot_baseline"] is True
  nlu = run["results"]["NLU"]["ssp3"]["summary"]["casp12"]["accuracy"]
  one_hot = run["results"]["one-hot"]["ssp3"]["summary"]["casp12"]["accuracy"]
  # The synthetic labels are a function of the residue: one-hot suffices.
  assert one_hot["mean"] > 0.9, one_hot
  assert run["table"]["columns"][:3] == [
      "ours [NLU]",
      "one-hot baseline",
      "ours [NLU] − one-hot",
  ]
  (row,) = [r for r in run["table"]["rows"] if r["test_set"] == "casp12"]
  difference = row["ours [NLU] − one-hot"]
  paired = [a - b for a, b in zip(nlu["values"], one_hot["values"])]
  assert difference["values"] == pytest.approx(paired)
  assert difference["mean"] == pytest.approx(np.mean(paired))
  assert difference["std"] == pytest.approx(np.std(paired, ddof=1))
  table = (out / "results.md").read_text()
  assert "| ours [NLU] | one-hot baseline | ours [NLU] − one-hot |" in table
  sign = "+" if difference["mean"] >= 0 else "-"
  assert f"| {sign}{abs(difference['mean']):.4f} ± " in table


def test_one_hot_store():
  store = harness.OneHotStore()
  example = formats.Example("p1", "MKX", np.zeros(3, np.int32))
  rows = store.get(example)
  assert rows.shape == (3, 28) and rows.dtype == np.float32
  assert (rows.sum(axis=1) == 1).all()
  assert [vocabularies.RESIDUES[i] for i in rows.argmax(axis=1)] == list("MKX")
  assert harness.OneHotStore(8).width == 32
  assert "MKT" in store and "MK1" not in store


def test_missing_embeddings_name_the_protein(bench, tmp_path):
  np.savez(tmp_path / "empty.npz", unused=np.zeros(1))
  with pytest.raises(KeyError, match=r"training_hhblits.csv:\d+"):
    cli.main([
        "--tasks=ssp3",
        f"--data_dir={bench}",
        f"--embeddings=X={tmp_path / 'empty.npz'}",
        f"--output_dir={tmp_path / 'out'}",
        *SMALL,
    ])


def test_a_missing_embeddings_file_fails_before_any_work(bench, tmp_path):
  with pytest.raises(ValueError, match="NLU=nope.npz: nope.npz does not"):
    cli.main([
        "--tasks=ssp3",
        f"--data_dir={bench}",
        "--embeddings=NLU=nope.npz",
        f"--output_dir={tmp_path}",
    ])


def test_embedding_of_the_wrong_length_is_an_error(tmp_path):
  example = formats.Example("p1", "MKT", np.zeros(3, np.int32))
  key = harness.sequence_key("MKT")
  np.savez(tmp_path / "e.npz", **{f"per_residue/{key}": np.zeros((4, 8))})
  store = harness.EmbeddingStore(str(tmp_path / "e.npz"))
  with pytest.raises(ValueError, match=r"p1 .* shape \(4, 8\).* 3 residues"):
    store.get(example)
  assert "MKT" in store and "MKTA" not in store


def test_h5_embeddings_read_as_npz_ones(tmp_path):
  import h5py  # pylint: disable=g-import-not-at-top

  example = formats.Example("p1", "MKT", np.zeros(3, np.int32))
  rows = np.arange(24, dtype=np.float32).reshape(3, 8)
  with h5py.File(tmp_path / "e.h5", "w") as f:
    f.create_dataset(f"per_residue/{harness.sequence_key('MKT')}", data=rows)
  store = harness.EmbeddingStore(str(tmp_path / "e.h5"))
  np.testing.assert_array_equal(store.get(example), rows)
  assert "MKT" in store and "MK" not in store
  store.close()


def test_missing_files_list_the_layout(tmp_path):
  with pytest.raises(ValueError, match="fluorescence_train.csv  \\(missing\\)"):
    cli.main([
        "--tasks=fluorescence",
        f"--data_dir={tmp_path}",
        f"--write_fasta={tmp_path / 'x.fasta'}",
    ])


def test_sequence_key_is_stable_and_distinct():
  assert harness.sequence_key("MKTAYIAK") == harness.sequence_key("MKTAYIAK")
  assert harness.sequence_key("MKTAYIAK") != harness.sequence_key("MKTAYIAL")
  assert harness.sequence_key("M").startswith("seq_")


def test_summarize_mean_and_sample_std():
  # Mean 0.8; deviations -0.1, 0, 0.1: sum of squares 0.02 / (3 - 1).
  s = harness.summarize([0.7, 0.8, 0.9])
  assert s["mean"] == pytest.approx(0.8)
  assert s["std"] == pytest.approx(math.sqrt(0.01))
  assert harness.summarize([0.5])["std"] == 0.0
  assert math.isnan(harness.summarize([math.nan])["mean"])


def test_table_puts_published_numbers_beside_ours():
  summary = {"mean": 0.8, "std": 0.01, "values": [0.79, 0.81]}
  results = {
      "NLU": {
          "ssp3": {
              "summary": {
                  "casp12": {"accuracy": summary},
                  "ts115": {"accuracy": summary},
              }
          }
      }
  }
  published = {
      "results": [
          {
              "model": "M",
              "task_token": "S2S",
              "task": "ssp3",
              "test_set": "casp12",
              "metric": "accuracy",
              "value": 0.75,
          },
          {
              "model": "M",
              "task_token": None,
              "task": "gb1",
              "test_set": "three_vs_rest",
              "metric": "spearman",
              "value": 0.5,
          },
      ]
  }
  table = report.table(
      results, model_name="mine", published=published, published_models=["M"]
  )
  assert table["columns"] == ["mine [NLU]", "M [S2S]"]
  labels = [row["label"] for row in table["rows"]]
  # Paper rows of the tasks run (CASP14 had no result: left out), then the
  # extra test set; no GB1 row, as GB1 was not run.
  assert labels == ["SSP3 | CASP12 | accuracy", "ssp3 | ts115 | accuracy"]
  text = report.markdown(table)
  assert "| SSP3 | CASP12 | accuracy | 0.8000 ± 0.0100 | 0.7500 |" in text
  assert "| ssp3 | ts115 | accuracy | 0.8000 ± 0.0100 |  |" in text


def test_our_columns_never_take_a_published_name():
  summary = {"mean": 0.8, "std": 0.0, "values": [0.8], "n": 1}
  results = {"NLU": {"ssp3": {"summary": {"casp12": {"accuracy": summary}}}}}
  published = {
      "results": [{
          "model": "M",
          "task_token": "NLU",
          "task": "ssp3",
          "test_set": "casp14",
          "metric": "accuracy",
          "value": 0.5,
      }]
  }
  with pytest.raises(ValueError, match=r"\['M \[NLU\]'\]"):
    report.table(
        results, model_name="M", published=published, published_models=["M"]
    )
  with pytest.raises(ValueError, match="choose another"):
    report.check_model_name("M", published)
  report.check_model_name("M (ours)", published)
  # The CASP14 row has a published number only: not shown.
  table = report.table(
      results, model_name="ours", published=published, published_models=["M"]
  )
  assert [row["test_set"] for row in table["rows"]] == ["casp12"]


def test_seeds_without_a_number_are_counted():
  s = harness.summarize([0.5, math.nan, 0.7])
  assert s["n"] == 2 and s["mean"] == pytest.approx(0.6)
  results = {"NLU": {"ssp3": {"summary": {"casp12": {"accuracy": s}}}}}
  text = report.markdown(
      report.table(results, published={"results": []}, published_models=[])
  )
  assert "0.6000 ± 0.1414 (n=2/3)" in text


def test_published_numbers_are_as_printed():
  published = report.load_published()
  for entry in published["results"]:
    assert entry["source"] in published["sources"]
    printed = entry["printed"]
    value = float(printed.rstrip("%"))
    if printed.endswith("%"):
      value /= 100
    assert entry["value"] == pytest.approx(value), entry
  ankh3 = {
      (e["model"], e["task_token"], e["task"], e["test_set"]): e["value"]
      for e in published["results"]
      if e["model"].startswith("Ankh3")
  }
  assert ankh3[("Ankh3-XL", "NLU", "ssp3", "casp12")] == pytest.approx(0.844)
  assert ankh3[("Ankh3-Large", "S2S", "fluorescence", "tape_fluorescence")] == (
      pytest.approx(0.65)
  )


@pytest.mark.t5x
@pytest.mark.slow
def test_cli_embeds_with_a_checkpoint_first(bench, tiny_checkpoint, tmp_path):
  out = tmp_path / "out"
  assert (
      cli.main([
          "--tasks=ssp3",
          f"--data_dir={bench}",
          f"--checkpoint={tiny_checkpoint}",
          f"--gin_file={os.path.join(REPO, 'gin/models/ankh3_tiny.gin')}",
          "--task_tokens=NLU,S2S",
          f"--output_dir={out}",
          "--epochs=2",
          "--warmup_steps=1",
          "--seeds=7",
          "--no_progress",
      ])
      == 0
  )
  results = json.loads((out / "results.json").read_text())["results"]
  assert set(results) == {"NLU", "S2S", "one-hot"}
  for token in ("NLU", "S2S"):
    emb = np.load(out / f"embeddings_{token}.npz")
    sequences = (out / "sequences.fasta").read_text().split()[1::2]
    assert len(emb["ids"]) == len(sequences)
    assert (
        len(sequences) == synthetic.SIZES["train"] + 2 * synthetic.SIZES["test"]
    )
    assert (
        0
        <= results[token]["ssp3"]["summary"]["casp12"]["accuracy"]["mean"]
        <= 1
    )
  # The two settings embed differently: the task token changes the encoder.
  nlu, s2s = np.load(out / "embeddings_NLU.npz"), np.load(
      out / "embeddings_S2S.npz"
  )
  key = f"per_residue/{nlu['keys'][0]}"
  assert nlu[key].shape == s2s[key].shape
  assert not np.allclose(nlu[key], s2s[key])


@pytest.mark.t5x
@pytest.mark.slow
def test_a_failed_first_step_leaves_no_output_dir(
    bench, tiny_checkpoint, tmp_path
):
  out = tmp_path / "out"
  flags = [
      "--tasks=ssp3",
      f"--data_dir={bench}",
      f"--checkpoint={tiny_checkpoint}",
      # A Large gin file for the tiny checkpoint: embedding fails at once.
      f"--gin_file={os.path.join(REPO, 'gin/models/ankh3_large.gin')}",
      f"--output_dir={out}",
      "--seeds=7",
      "--no_progress",
  ]
  with pytest.raises(ValueError, match="Config mismatch in emb_dim"):
    cli.main(flags)
  assert not out.exists()
  # A directory the user made is left, with what was in it.
  out.mkdir()
  (out / "mine.txt").write_text("kept")
  with pytest.raises(ValueError, match="Config mismatch"):
    cli.main(flags)
  assert (out / "mine.txt").read_text() == "kept"
