"""Tests of `ankh3_tasks.gin_guard`: a mistyped macro stops a T5X run."""

import pytest

from conftest import run_module

pytestmark = pytest.mark.t5x

TINY = "gin/experiments/ankh3_tiny_sample.gin"


@pytest.mark.parametrize(
    "binding, unused",
    [
        ("TRAIN_STEP = 10", [("TRAIN_STEP", "TRAIN_STEPS")]),
        ("TRAIN_STEPS = 10", []),
        ("BATCHSIZE = 8", [("BATCHSIZE", "BATCH_SIZE")]),
        # Set by a file of the run, read by the package's tools, not by T5X.
        ("NUM_DEVICES = 2", []),
        # A configurable's parameter: gin checks those itself.
        ("utils.SaveCheckpointConfig.period = 5", []),
        ("QWXZV = 1", [("QWXZV", None)]),
        # Read by the package's code (sources.data_dir), not by a binding.
        ("ANKH3_DATA_DIR = '/data'", []),
    ],
)
def test_a_command_line_macro_must_be_read_or_set(binding, unused):
  import gin  # pylint: disable=g-import-not-at-top

  from ankh3_tasks import gin_guard  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import t5x_adapter  # pylint: disable=g-import-not-at-top

  with t5x_adapter.parsed_gin([TINY], [binding]):
    # pylint: disable-next=protected-access
    found = gin_guard.unused_macros(gin.config._CONFIG, [binding], [TINY])
  assert found == unused


def test_the_macros_read_by_code_are_the_codes():
  from ankh3_tasks import gin_guard  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import sources  # pylint: disable=g-import-not-at-top

  assert gin_guard.READ_BY_CODE == {sources.DATA_DIR_MACRO}


def test_t5x_train_stops_on_a_mistyped_macro(tmp_path):
  model_dir = tmp_path / "run"
  run = run_module(
      "t5x.train",
      f"--gin_file={TINY}",
      f'--gin.MODEL_DIR="{model_dir}"',
      "--gin.TRAIN_STEP=10",
      timeout=300,
      check=False,
  )
  assert run.returncode != 0
  assert (
      "--gin.TRAIN_STEP: no gin file of this run reads the macro TRAIN_STEP;"
      " did you mean TRAIN_STEPS?"
  ) in run.stderr
  assert not model_dir.exists()  # Stopped before T5X wrote anything.


COMPLETE = "gin/experiments/ankh3_tiny_complete.gin"


def test_a_checkpoint_of_another_size_is_refused_in_one_line(tiny_checkpoint):
  import gin  # pylint: disable=g-import-not-at-top

  from ankh3_tasks import gin_guard  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import t5x_adapter  # pylint: disable=g-import-not-at-top

  path = f'CHECKPOINT_PATH = "{tiny_checkpoint}"'
  with t5x_adapter.parsed_gin([COMPLETE], [path], script="infer"):
    # pylint: disable-next=protected-access
    gin_guard.check_checkpoint_matches_model(gin.config._CONFIG)
  for binding, field in (
      ("network.Ankh3Config.emb_dim = 1536", "emb_dim"),
      ("network.Ankh3Config.num_decoder_layers = 24", "num_decoder_layers"),
  ):
    with t5x_adapter.parsed_gin([COMPLETE], [path, binding], script="infer"):
      with pytest.raises(ValueError) as raised:
        # pylint: disable-next=protected-access
        gin_guard.check_checkpoint_matches_model(gin.config._CONFIG)
    message = str(raised.value)
    assert message.startswith(f"CHECKPOINT_PATH {tiny_checkpoint}: ")
    assert f"Config mismatch in {field}" in message
    assert "\n" not in message


def test_t5x_infer_stops_on_a_checkpoint_of_another_size(
    tiny_checkpoint, tmp_path
):
  out = tmp_path / "predictions"
  run = run_module(
      "t5x.infer",
      f"--gin_file={COMPLETE}",
      "--gin.network.Ankh3Config.emb_dim=1536",
      f'--gin.CHECKPOINT_PATH="{tiny_checkpoint}"',
      f'--gin.INFER_OUTPUT_DIR="{out}"',
      '--gin.INPUT_FASTA="examples/proteins.fasta"',
      timeout=300,
      check=False,
  )
  assert run.returncode != 0
  last = run.stderr.strip().splitlines()[-1]
  assert last == (
      f"ValueError: CHECKPOINT_PATH {tiny_checkpoint}: Config mismatch in "
      "emb_dim: the gin model has 1536, the checkpoint has 128."
  )
  assert "Not restoring param" not in run.stderr
  assert not out.exists()


def test_finished_predictions_in_the_output_dir_are_named(tmp_path, caplog):
  import logging  # pylint: disable=g-import-not-at-top

  import gin  # pylint: disable=g-import-not-at-top

  from ankh3_tasks import gin_guard  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import t5x_adapter  # pylint: disable=g-import-not-at-top

  out = tmp_path / "predictions"
  bindings = [f'INFER_OUTPUT_DIR = "{out}"']
  name = "ankh3_complete-predict.jsonl-00000-of-00001"

  def check():
    caplog.clear()
    with caplog.at_level(logging.WARNING):
      with t5x_adapter.parsed_gin([COMPLETE], bindings, script="infer"):
        # pylint: disable-next=protected-access
        gin_guard.check_infer_output_dir(gin.config._CONFIG)
    return caplog.text

  assert "already holds" not in check()  # Not there yet.
  out.mkdir()
  (out / "config.gin").write_text("")
  (out / "tmp-ankh3_complete-00000-of-00001").mkdir()  # Unfinished chunks.
  assert "already holds" not in check()
  (out / name).write_text("{}\n")
  (out / f"{name}.COMPLETED").write_text("")
  said = check()
  assert f"already holds finished predictions ({name})" in said
  assert "keeps them as they are" in said
  assert gin_guard.finished_predictions(str(out)) == [name]
