"""Sequence completion: the task's examples, JSONL -> FASTA, and `t5x.infer`
end to end with the tiny model (marker `t5x`; the end-to-end tests `slow`)."""

import json
import re
import sys

import pytest

from ankh3_tasks import complete
from ankh3_tasks import vocabularies

from conftest import REPO
from conftest import run_module
from conftest import write_fasta

pytestmark = pytest.mark.t5x

EXPERIMENT = "gin/experiments/ankh3_tiny_complete.gin"
PROTEINS = {
    "p1": "MKTAYIAK",
    "p2": "MSEQNNTEMTFQIQRIYTKDISFEAPNAPHVFQKDW",
    "p3": "MA",
    "p4": "G",
}
VOCAB = vocabularies.Ankh3Vocabulary()
S2S = VOCAB.token_id(vocabularies.S2S)


def _ids(residues):
  return [VOCAB.token_id(r) for r in residues]


def _fasta(path, proteins=PROTEINS):
  return write_fasta(
      path, [(f"{k} some description", [v]) for k, v in proteins.items()]
  )


def _examples(fasta, lengths=None, **kwargs):
  name = complete.register_completion_task(
      fasta, name="test_complete", **kwargs
  )
  import seqio  # pylint: disable=g-import-not-at-top

  ds = seqio.get_mixture_or_task(name).get_dataset(
      lengths or {"inputs": 64, "targets": 64}, split="infer", shuffle=False
  )
  return list(ds.as_numpy_iterator())


def test_inputs_are_s2s_and_the_first_half(tmp_path):
  examples = _examples(_fasta(tmp_path / "p.fasta"))
  assert [e["id"].decode() for e in examples] == list(PROTEINS)
  eos = VOCAB.eos_id
  for example, sequence in zip(examples, PROTEINS.values()):
    n = max(len(sequence) // 2, 1)
    assert example["prefix"].decode() == sequence[:n]
    assert example["continuation"].decode() == sequence[n:]
    assert list(example["inputs"]) == [S2S, *_ids(sequence[:n]), eos]
    assert list(example["targets"]) == [*_ids(sequence[n:]), eos]
  # MKTAYIAK -> [S2S] M K T A </s>; a 1-residue protein keeps its residue.
  assert examples[0]["prefix"] == b"MKTA"
  assert examples[3]["prefix"] == b"G" and examples[3]["continuation"] == b""


def test_prefix_fraction_and_long_prefixes(tmp_path):
  fasta = _fasta(tmp_path / "p.fasta", {"long": "ACDEFGHIKL" * 10})
  (example,) = _examples(fasta, prefix_fraction=0.53)
  assert len(example["prefix"]) == 53  # floor(0.53 * 100), not 52.
  # inputs 12: [S2S] + the last 10 prefix residues + </s>.
  (example,) = _examples(fasta, {"inputs": 12, "targets": 64})
  assert len(example["prefix"]) == 50
  assert list(example["inputs"]) == [S2S, *_ids("ACDEFGHIKL"), VOCAB.eos_id]
  (example,) = _examples(fasta, prefix_fraction=1.0)
  assert example["continuation"] == b""


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_bad_prefix_fraction_fails_fast(fraction, tmp_path):
  with pytest.raises(ValueError, match="prefix_fraction"):
    complete.register_completion_task(
        str(tmp_path / "p.fasta"), prefix_fraction=fraction
    )


def test_prefix_length():
  assert complete.prefix_length(8, 0.5) == 4
  assert complete.prefix_length(1, 0.5) == 1
  assert complete.prefix_length(3, 1.0) == 3


def test_to_fasta_decodes_ids_and_reports_other_tokens(tmp_path, capsys):
  rows = [
      ("a", "MKTA", _ids("YIAK") + [VOCAB.eos_id] + _ids("WW") + [0, 0]),
      ("b", "M", [VOCAB.sentinel_id(0), *_ids("KK"), S2S, VOCAB.eos_id]),
  ]
  path = tmp_path / "t-predict.jsonl-00000-of-00001"
  with open(path, "w") as f:
    for record_id, prefix, tokens in rows:
      row = {
          "inputs": {"id": record_id, "prefix": prefix, "continuation": ""},
          "prediction_tokens": tokens,
      }
      f.write(json.dumps(row) + "\n")
  output = tmp_path / "out.fasta"
  assert (
      complete.main(
          ["to_fasta", f"--predictions={tmp_path}", f"--output={output}"]
      )
      == 0
  )
  assert output.read_text() == (
      ">a prefix_len=4 generated_len=4\nMKTAYIAK\n"
      ">b prefix_len=1 generated_len=2 dropped_tokens=2\nMKK\n"
  )
  assert "<extra_id_0> x1, [S2S] x1" in capsys.readouterr().err


# ------------------------------------------------------------- end to end


def _complete(checkpoint, fasta, out, *bindings):
  run_module(
      "t5x.infer",
      f"--gin_file={EXPERIMENT}",
      f'--gin.CHECKPOINT_PATH="{checkpoint}"',
      f'--gin.INFER_OUTPUT_DIR="{out}"',
      f'--gin.INPUT_FASTA="{fasta}"',
      *(f"--gin.{b}" for b in bindings),
  )
  output = out / "completed.fasta"
  run_module(
      "ankh3_tasks.complete",
      "to_fasta",
      f"--predictions={out}",
      f"--output={output}",
  )
  records = {}
  for block in output.read_text().split(">")[1:]:
    header, *lines = block.splitlines()
    records[header.split()[0]] = (header, "".join(lines))
  return records


@pytest.mark.slow
def test_greedy_and_sampled_completion(tiny_checkpoint, tmp_path):
  checkpoint = tiny_checkpoint
  fasta = _fasta(tmp_path / "in.fasta")
  greedy = _complete(checkpoint, fasta, tmp_path / "greedy")
  assert list(greedy) == list(PROTEINS)
  for record_id, sequence in PROTEINS.items():
    header, completed = greedy[record_id]
    n = max(len(sequence) // 2, 1)
    match = re.fullmatch(
        r"\S+ prefix_len=(\d+) generated_len=(\d+)( dropped_tokens=\d+)?",
        header,
    )
    assert match and int(match[1]) == n, header
    assert completed.startswith(sequence[:n])
    assert len(completed) == n + int(match[2])
    assert re.fullmatch(f"[{vocabularies.RESIDUES}]+", completed)
  # Sampling (with t5x.infer's fixed key) gives other continuations.
  sampled = _complete(
      checkpoint, fasta, tmp_path / "sampled", "TEMPERATURE=1.0"
  )
  assert list(sampled) == list(PROTEINS)
  for record_id, sequence in PROTEINS.items():
    assert sampled[record_id][1].startswith(
        sequence[: max(len(sequence) // 2, 1)]
    )
  assert [s for _, s in sampled.values()] != [s for _, s in greedy.values()]


@pytest.mark.parametrize(
    "files",
    [
        [EXPERIMENT],
        [
            "gin/models/ankh3_large.gin",
            "gin/runs/ankh3_infer.gin",
            "gin/partitioning/gpu_8.gin",
        ],
    ],
)
def test_infer_gin_files_parse_and_register_the_task(
    files, tmp_path, monkeypatch
):
  import gin  # pylint: disable=g-import-not-at-top
  from t5x import infer as infer_script  # pylint: disable=g-import-not-at-top

  # The run file imports `__main__ as infer_script`, t5x.infer when run.
  monkeypatch.setitem(sys.modules, "__main__", infer_script)
  fasta = _fasta(tmp_path / "p.fasta")
  gin.clear_config()
  try:
    gin.add_config_file_search_path(REPO)
    gin.parse_config_files_and_bindings(
        files,
        [
            'CHECKPOINT_PATH = "unused"',
            'INFER_OUTPUT_DIR = "unused"',
            f'INPUT_FASTA = "{fasta}"',
        ],
        finalize_config=True,
    )
    name = gin.query_parameter("%MIXTURE_OR_TASK_NAME").scoped_configurable_fn()
    assert name == complete.DEFAULT_NAME
    assert gin.query_parameter("utils.DatasetConfig.split") == complete.SPLIT
    assert gin.query_parameter("%TOPK") == 0
    assert (
        tuple(
            gin.query_parameter(
                "infer_script.write_inferences_to_file.input_fields_to_include"
            )
        )
        == complete.RECORD_FIELDS
    )
  finally:
    gin.clear_config()
