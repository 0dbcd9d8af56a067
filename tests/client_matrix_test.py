"""Tests of tools/client_matrix.py, and the client matrix where it is built.

The matrix tests run an exported model in each side environment of
`$ANKH3_CLIENT_VENVS` (default `.client-venvs/`; make them with `python
tools/client_matrix.py build --ankh_source ANKH_CHECKOUT`) and skip, saying
which, where one is missing.
"""

import importlib.util
import json
import os
import subprocess

import pytest

from conftest import REPO

_spec = importlib.util.spec_from_file_location(
    "client_matrix", os.path.join(REPO, "tools", "client_matrix.py")
)
client_matrix = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(client_matrix)


def _fake_ankh(tmp_path):
  source = tmp_path / "Ankh"
  (source / "src" / "ankh").mkdir(parents=True)
  (source / "src" / "ankh" / "likelihood.py").write_text("")
  return source


def test_build_installs_the_pins_and_the_ankh_checkout(
    tmp_path, monkeypatch, capsys
):
  monkeypatch.setenv(client_matrix.VENVS_ENV, str(tmp_path / "venvs"))
  source = _fake_ankh(tmp_path)
  assert (
      client_matrix.main(["build", "--dry-run", f"--ankh_source={source}"]) == 0
  )
  out = capsys.readouterr().out
  for client in client_matrix.CLIENTS:
    venv = tmp_path / "venvs" / f"transformers-{client}"
    assert f"-m venv {venv}" in out
    assert f"{venv}/bin/python -m pip install transformers=={client}" in out
  assert "tokenizers==0.13.3" in out and "torch==2.13.0" in out
  assert out.count(f"--no-deps {source}") == len(client_matrix.CLIENTS)
  # The likelihood parity test needs 4.57.6 first.
  assert out.index("transformers-4.57.6") < out.index("transformers-4.25.1")
  assert client_matrix.find_venv("4.57.6") is None  # A dry run makes none.
  assert (
      client_matrix.main(["build", "--dry-run", f"--ankh_source={tmp_path}"])
      == 2
  )


def test_random_texts_hold_what_users_type():
  texts = client_matrix.random_texts(3000)
  joined = "".join(texts)
  for part in ("[NLU]", "[S2S]", "<extra_id_0>", "<extra_id_224>", " "):
    assert part in joined, part
  for residue in "OUZBX":
    assert residue in joined and residue.lower() in joined
  assert client_matrix.random_texts(50, seed=1) != client_matrix.random_texts(
      50
  )


def test_evaluate_counts_what_a_client_gets_wrong():
  cases = client_matrix.make_cases(20)
  good = [ids + [1] for ids in cases["ids"]]
  bad = [list(ids) for ids in good]
  bad[3] = [2] + bad[3]  # An extra <unk>, as 5.x T5Tokenizer gives.
  decoded = [
      "".join(f"<extra_id_{255 - i}>" if i > 30 else "L" for i in ids)
      for ids in cases["ids"]
  ]
  raw = {
      "versions": {"transformers": "x"},
      "lm_head_tied": False,
      "encoder_of_ids": [[0.0, 1.0]],
      "generate_of_ids": [0, 255, 1],
      "tokenizers": {
          "AutoTokenizer": {
              "class": "C",
              "len": 256,
              "extra_id_0": 255,
              "ids": good,
              "decoded": cases["texts"],
              "batch_keys": [],
              "model_batch": "ok",
              "encoder_of_batch": [[0.0, 1.5]],
              "generate": [0, 255, 1],
              "generate_decoded": "<pad><extra_id_0></s>",
          },
          "T5Tokenizer": {
              "class": "C",
              "len": 32,
              "extra_id_0": None,
              "ids": bad,
              "decoded": decoded,
              "model_batch": "TypeError: no",
              "generate_error": "ValueError: no",
          },
      },
  }
  result = client_matrix.evaluate(cases, raw)
  good_row = result["tokenizers"]["AutoTokenizer"]
  assert good_row["ids_right"] == good_row["decode_right"] == 20
  assert good_row["encoder_batch_vs_ids"] == 0.5
  assert good_row["generate_same_as_ids"]
  assert good_row["generate_decode_round_trip"]
  bad_row = result["tokenizers"]["T5Tokenizer"]
  assert bad_row["ids_right"] == 19
  assert bad_row["ids_first_wrong"][0]["text"] == cases["texts"][3]
  assert bad_row["decode_right"] < 20
  table = client_matrix.table({"x": result})
  assert "| 19 / 20 |" in table and "fails: TypeError: no" in table


def test_fasta_records_are_joined_across_lines(tmp_path):
  path = tmp_path / "a.fasta"
  path.write_text(">p1 first\nMKT\nAYI\n\n>p2\nmk\n")
  assert client_matrix.read_fasta(str(path)) == [
      ("p1", "MKTAYI"),
      ("p2", "mk"),
  ]


# ------------------------------------------------------- the client matrix


def _venv_or_skip(client):
  venv = client_matrix.find_venv(client)
  if venv is None:
    pytest.skip(
        f"no side environment transformers-{client} in "
        f"{client_matrix.venvs_root()} (${client_matrix.VENVS_ENV}); make it "
        f"with: python tools/client_matrix.py build --client {client} "
        "--ankh_source ANKH_CHECKOUT"
    )
  return venv


@pytest.fixture(scope="module", name="exported")
def _exported(request, tmp_path_factory):
  """The tiny trained model, exported by `convert t5x-to-hf` (needs T5X)."""
  if not any(client_matrix.find_venv(c) for c in client_matrix.CLIENTS):
    pytest.skip(
        f"no side environment in {client_matrix.venvs_root()} "
        f"(${client_matrix.VENVS_ENV}); make them with: python "
        "tools/client_matrix.py build --ankh_source ANKH_CHECKOUT"
    )
  pytest.importorskip("t5x", reason="needs T5X")
  pytest.importorskip("transformers", reason="needs transformers (extra hf)")
  from ankh3_tasks import convert  # pylint: disable=g-import-not-at-top

  checkpoint = request.getfixturevalue("tiny_checkpoint")
  hf_dir = tmp_path_factory.mktemp("client_matrix") / "hf"
  old = os.getcwd()
  os.chdir(REPO)
  try:
    assert (
        convert.main([
            "t5x-to-hf",
            f"--checkpoint={checkpoint}",
            "--gin_file=gin/models/ankh3_tiny.gin",
            f"--output={hf_dir}",
        ])
        == 0
    )
  finally:
    os.chdir(old)
  return str(hf_dir)


@pytest.fixture(scope="module", name="cases")
def _cases():
  return client_matrix.make_cases(3000)


def _reference_encoder(hf_dir, ids):
  """This environment's transformers on the package's ids."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  model = transformers.T5EncoderModel.from_pretrained(hf_dir).eval()
  with torch.no_grad():
    out = model(input_ids=torch.tensor([ids])).last_hidden_state
  return out[0, :, :16].tolist()


@pytest.mark.t5x
@pytest.mark.slow
@pytest.mark.parametrize("client", sorted(client_matrix.CLIENTS))
def test_every_client_reads_an_export_right(client, exported, cases):
  venv = _venv_or_skip(client)
  result = client_matrix.check(
      venv, exported, cases, ankh=client_matrix.built_with_ankh(venv)
  )
  assert result["versions"]["transformers"] == client
  assert not result["lm_head_tied"]
  reference = _reference_encoder(exported, cases["model_ids"])
  assert client_matrix.max_diff(result["encoder_of_ids"], reference) < 1e-4
  n = len(cases["texts"])
  rows = result["tokenizers"]
  t5_gives_unk = client.startswith("5.")  # The documented exception.
  for name, row in rows.items():
    assert row["load"].endswith("256 tokens"), (name, row["load"])
    assert row["extra_id_0"] == 255, name
    if name == "T5Tokenizer" and t5_gives_unk:
      assert row["ids_right"] < n
      assert row["ids_first_wrong"][0]["client"].count(2) > 0
      continue
    assert row["ids_right"] == n, (name, row["ids_first_wrong"])
    assert row["decode_right"] == n, (name, row["decode_first_wrong"])
    assert row["batch_keys"] == ["attention_mask", "input_ids"], name
    assert row["model_batch"] == "ok", name
    assert row["encoder_batch_vs_ids"] < 1e-5, name
    assert row["generate_same_as_ids"], name
    assert row["generate_decode_round_trip"], name
  if t5_gives_unk:
    assert "T5Tokenizer, pre_tokenizer=None" in rows  # The workaround.
  ankh = result["ankh"]
  if ankh is None:
    return  # Built without --ankh_source: the table says so.
  if client.startswith("5."):
    # Upstream: the Ankh library imports TFT5EncoderModel, gone in 5.x.
    assert "TFT5EncoderModel" in ankh["import_error"]
    return
  proteins = len(client_matrix.PROTEINS)
  assert "T5Tokenizer (256 tokens)" in ankh["loaders"]
  assert ankh["nlu_ids_right"] == ankh["embedding_ids_right"] == proteins
  assert ankh["likelihood_finite"], ankh["likelihood"]


_RECIPE = """
import sys, transformers
slow = transformers.T5Tokenizer(sys.argv[1], extra_ids=225)
slow.save_pretrained(sys.argv[2])
transformers.T5TokenizerFast.from_pretrained(sys.argv[2]).save_pretrained(
    sys.argv[2])
"""


def _release_recipe(venv, spiece, directory):
  """The released files' recipe, run by transformers 4.25.1 itself."""
  # 4.25.1's slow-to-fast conversion needs protobuf 3.20 or pure Python.
  env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python")
  subprocess.run(
      [client_matrix.venv_python(venv), "-c", _RECIPE, spiece, directory],
      check=True,
      capture_output=True,
      env=env,
  )


@pytest.mark.parametrize("swap", [False, True], ids=["built-in", "O<->X"])
def test_release_recipe_files_and_the_diff(swap, tmp_path):
  venv = _venv_or_skip("4.25.1")
  pytest.importorskip("tokenizers", reason="needs tokenizers (extra hf)")
  from ankh3_tasks import hf_tokenizer  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import vocabularies  # pylint: disable=g-import-not-at-top

  tokens = list(vocabularies.default_tokens())
  if swap:
    tokens[6], tokens[27] = tokens[27], tokens[6]
  vocab = vocabularies.Ankh3Vocabulary(tokens)
  ours = tmp_path / "export"
  hf_tokenizer.save(vocab, str(ours))
  release = tmp_path / "release"
  _release_recipe(venv, str(ours / "spiece.model"), str(release))
  # The export's special_tokens_map.json is the recipe's, byte for byte.
  assert (release / "special_tokens_map.json").read_bytes() == (
      ours / "special_tokens_map.json"
  ).read_bytes()
  id_lines, file_lines = hf_tokenizer.diff(str(release))
  if swap:
    assert [line.split(":")[0] for line in id_lines] == ["id 6", "id 27"]
  else:
    assert id_lines == []
  # 4.25.1's converted tokenizer.json puts a ▁ (an <unk>) before words.
  assert any("Metaspace" in line for line in file_lines)


@pytest.mark.t5x
@pytest.mark.parametrize("client", sorted(client_matrix.CLIENTS))
def test_ankh_likelihood_prints_json_per_protein(
    client, exported, tmp_path, capsys
):
  venv = _venv_or_skip(client)
  if not client_matrix.built_with_ankh(venv):
    pytest.skip(f"{venv} was built without --ankh_source")
  fasta = tmp_path / "p.fasta"
  fasta.write_text(">a one\nMKTAYIAK\nQR\n>b\nOUBZX\n")
  status = client_matrix.main([
      "ankh-likelihood",
      f"--venv={venv}",
      f"--model_dir={exported}",
      f"--fasta={fasta}",
  ])
  out = json.loads(capsys.readouterr().out)
  assert out["transformers"] == client
  if client.startswith("5."):
    # Upstream: the Ankh library imports TFT5EncoderModel, gone in 5.x.
    assert status == 1 and "TFT5EncoderModel" in out["error"]
    return
  assert status == 0, out
  assert [(p["id"], p["length"]) for p in out["proteins"]] == [
      ("a", 10),
      ("b", 5),
  ]
  assert all(0 < p["pseudo_likelihood"] <= 1 for p in out["proteins"])
  assert out["wall_s"] > 0
