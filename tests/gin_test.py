"""Tests of the shipped gin files against real T5X (marker `t5x`).

Every file parses and binds; the Large and XL files build the paper's models
to the parameter; batch and dimensions divide each topology's mesh; the run
files never truncate a target.
"""

import glob
import math
import os
import sys

import pytest

from ankh3_tasks import gin_search_path
from ankh3_tasks import mesh
from ankh3_tasks import preprocessors

from conftest import REPO

pytestmark = pytest.mark.t5x

GIN_ROOT = gin_search_path.gin_search_path()

# Each shipped file in at least one combination T5X is run with; the
# bindings are what such a run passes as --gin.X=V.
EXPERIMENTS = {
    "tiny": (["gin/experiments/ankh3_tiny_sample.gin"], []),
    "large": (["gin/experiments/ankh3_large_pretrain.gin"], []),
    "xl": (["gin/experiments/ankh3_xl_pretrain.gin"], []),
    "large_2d": (
        [
            "gin/experiments/ankh3_large_pretrain.gin",
            "gin/partitioning/tpu_v4_128_data_parallel_2d.gin",
        ],
        [],
    ),
    "large_gpu_8": (
        [
            "gin/models/ankh3_large.gin",
            "gin/runs/ankh3_pretrain.gin",
            "gin/partitioning/gpu_8.gin",
        ],
        [
            "MIXTURE_OR_TASK_NAME = 'ankh3_uniref50_multitask'",
            "TRAIN_STEPS = 4000000",
        ],
    ),
    "large_gpu_1": (
        [
            "gin/models/ankh3_large.gin",
            "gin/runs/ankh3_pretrain.gin",
            "gin/partitioning/gpu_1.gin",
        ],
        [
            "MIXTURE_OR_TASK_NAME = 'ankh3_uniref50_multitask'",
            "TRAIN_STEPS = 4000000",
        ],
    ),
    "large_gpu_nodes_8": (
        [
            "gin/models/ankh3_large.gin",
            "gin/runs/ankh3_pretrain.gin",
            "gin/partitioning/gpu_nodes_8.gin",
        ],
        [
            "MIXTURE_OR_TASK_NAME = 'ankh3_uniref50_multitask'",
            "TRAIN_STEPS = 4000000",
            "NUM_NODES = 2",
        ],
    ),
    "xl_gpu_nodes_8": (
        [
            "gin/models/ankh3_xl.gin",
            "gin/runs/ankh3_pretrain.gin",
            "gin/partitioning/gpu_nodes_8_xl.gin",
        ],
        [
            "MIXTURE_OR_TASK_NAME = 'ankh3_uniref50_multitask'",
            "TRAIN_STEPS = 5000000",
            "NUM_NODES = 2",
        ],
    ),
}

# Paper, Table 2: encoder (with the embedding), decoder (with the output
# layer).
PAPER_PARAMETERS = {
    "large": (1_151_879_680, 727_169_536),
    "xl": (3_484_799_488, 2_246_107_648),
}


@pytest.fixture
def parse(monkeypatch):
  """Parses gin files as `python -m t5x.train` does; returns a resolver."""
  import gin  # pylint: disable=g-import-not-at-top
  from t5x import train as train_script  # pylint: disable=g-import-not-at-top

  # The run files import `__main__ as train_script`, which is t5x.train when
  # T5X runs them.
  monkeypatch.setitem(sys.modules, "__main__", train_script)

  def _parse(experiment, bindings=()):
    files, run_bindings = experiment
    gin.clear_config()
    gin.add_config_file_search_path(GIN_ROOT)
    # Finalizing, as T5X does, fails on a %gin.REQUIRED left unset.
    gin.parse_config_files_and_bindings(
        files,
        ['MODEL_DIR = "unused"', *run_bindings, *bindings],
        finalize_config=True,
    )
    return _resolve

  yield _parse
  gin.clear_config()


def _resolve(key):
  """Returns the value bound to `key`, with gin references called."""
  import gin  # pylint: disable=g-import-not-at-top

  value = gin.query_parameter(key)
  if isinstance(value, gin.config.ConfigurableReference):
    return value.scoped_configurable_fn() if value.evaluate else value
  return value


def test_every_shipped_gin_file_is_covered():
  shipped = {
      os.path.relpath(p, GIN_ROOT)
      for p in glob.glob(os.path.join(GIN_ROOT, "gin", "*", "*.gin"))
  }
  covered = set()
  for files, _ in EXPERIMENTS.values():
    for f in files:
      with open(os.path.join(GIN_ROOT, f)) as fh:
        covered.add(f)
        covered.update(
            line.split("'")[1]
            for line in fh
            if line.startswith("include 'gin/")
        )
  covered.add("gin/models/ankh3_base.gin")  # Included by every size file.
  # The t5x.infer files; tests/complete_test.py parses and runs them.
  covered.update({
      "gin/runs/ankh3_infer.gin",
      "gin/experiments/ankh3_tiny_complete.gin",
  })
  # The t5x.eval files; tests/evaluate_test.py parses and runs them.
  covered.update(
      {"gin/runs/ankh3_eval.gin", "gin/experiments/ankh3_tiny_eval.gin"}
  )
  assert shipped == covered


def test_package_gin_tree_is_the_repository_tree():
  # Installed or not, the package's gin/ holds the repository's gin files.
  def tree(root):
    files = glob.glob(os.path.join(root, "gin", "*", "*.gin"))
    return {
        os.path.relpath(p, root): open(p, encoding="utf-8").read()
        for p in files
    }

  assert tree(GIN_ROOT) == tree(REPO) != {}


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_gin_files_parse_and_bind(parse, name):
  from t5x import models  # pylint: disable=g-import-not-at-top
  from t5x import partitioning  # pylint: disable=g-import-not-at-top
  from t5x import utils  # pylint: disable=g-import-not-at-top

  resolve = parse(EXPERIMENTS[name])
  model = resolve("train_script.train.model")
  assert isinstance(model, models.EncoderDecoderModel)
  assert isinstance(
      resolve("train_script.train.partitioner"), partitioning.PjitPartitioner
  )
  for key in ("train_dataset_cfg", "train_eval_dataset_cfg"):
    cfg = resolve(f"train_script.train.{key}")
    assert isinstance(cfg, utils.DatasetConfig)
    assert cfg.mixture_or_task_name.startswith("ankh3_")
  assert resolve("train_eval/utils.DatasetConfig.split") == "validation"
  # Large and XL evaluate each masking rate and completion on their own.
  evaluated = resolve("train_script.train.train_eval_dataset_cfg")
  assert evaluated.mixture_or_task_name == {
      "tiny": "ankh3_sample_multitask",
      "large": "ankh3_uniref50_eval",
      "xl": "ankh3_uniref50_eval",
  }.get(name, evaluated.mixture_or_task_name)
  assert isinstance(
      resolve("train_script.train.checkpoint_cfg"), utils.CheckpointConfig
  )
  config = model.module.config
  assert config.relative_attention_num_buckets == 64
  assert config.relative_attention_max_distance == 128
  assert config.vocab_size == 256
  if name != "tiny":
    assert config.head_dim == 64
  assert tuple(config.mlp_activations) == ("silu", "linear")
  assert not config.logits_via_embedding
  assert model.input_vocabulary.vocab_size == 256


def test_base_file_without_a_size_fails(parse):
  with pytest.raises(ValueError, match="emb_dim"):
    parse((
        ["gin/models/ankh3_base.gin", "gin/runs/ankh3_pretrain.gin"],
        ["MIXTURE_OR_TASK_NAME = 'ankh3_sample_multitask'", "TRAIN_STEPS = 1"],
    ))


def test_experiment_without_model_dir_fails(parse):
  import gin  # pylint: disable=g-import-not-at-top

  gin.clear_config()
  gin.add_config_file_search_path(GIN_ROOT)
  with pytest.raises(ValueError, match="MODEL_DIR"):
    gin.parse_config_files_and_bindings(
        ["gin/experiments/ankh3_tiny_sample.gin"], [], finalize_config=True
    )


def _count_parameters(model, inputs, targets):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from flax import traverse_util  # pylint: disable=g-import-not-at-top

  shapes = jax.eval_shape(
      lambda: model.get_initial_variables(
          jax.random.PRNGKey(0),
          {
              "encoder_input_tokens": (1, inputs),
              "decoder_input_tokens": (1, targets),
          },
          {
              "encoder_input_tokens": jnp.int32,
              "decoder_input_tokens": jnp.int32,
          },
      )
  )
  flat = traverse_util.flatten_dict(shapes["params"])
  stacks = {"encoder": 0, "decoder": 0}
  for path, leaf in flat.items():
    # The shared embedding is counted with the encoder, as in the paper.
    stack = "decoder" if path[0] == "decoder" else "encoder"
    stacks[stack] += math.prod(leaf.shape)
  return stacks["encoder"], stacks["decoder"], flat


@pytest.mark.parametrize("size", ["large", "xl"])
def test_parameter_counts_are_the_papers(parse, size):
  resolve = parse(EXPERIMENTS[size])
  model = resolve("train_script.train.model")
  lengths = resolve("TASK_FEATURE_LENGTHS/macro.value")
  encoder, decoder, flat = _count_parameters(
      model, lengths["inputs"], lengths["targets"]
  )
  assert (encoder, decoder) == PAPER_PARAMETERS[size]
  # T5X's names, so its partitioning rules and checkpoint tools apply.
  assert ("encoder", "relpos_bias", "rel_embedding") in flat
  assert flat[("decoder", "relpos_bias", "rel_embedding")].shape[1] == 64
  assert ("decoder", "logits_dense", "kernel") in flat
  assert ("token_embedder", "embedding") in flat
  assert ("encoder", "layers_47", "mlp", "wi_1", "kernel") in flat


def test_32_buckets_would_miss_the_paper_by_1024(parse):
  resolve = parse(
      EXPERIMENTS["large"],
      ["network.Ankh3Config.relative_attention_num_buckets = 32"],
  )
  encoder, decoder, _ = _count_parameters(
      resolve("train_script.train.model"), 512, 320
  )
  assert sum(PAPER_PARAMETERS["large"]) - (encoder + decoder) == 1024


@pytest.mark.parametrize(
    "name",
    [
        "large",
        "xl",
        "large_2d",
        "large_gpu_8",
        "large_gpu_1",
        "large_gpu_nodes_8",
        "xl_gpu_nodes_8",
    ],
)
def test_batch_and_dimensions_divide_the_mesh(parse, name):
  resolve = parse(EXPERIMENTS[name])
  config = resolve("train_script.train.model").module.config
  shape = mesh.check_mesh(
      num_devices=resolve("NUM_DEVICES/macro.value"),
      num_partitions=resolve("partitioning.PjitPartitioner.num_partitions"),
      batch_size=resolve("BATCH_SIZE/macro.value"),
      num_heads=config.num_heads,
      mlp_dim=config.mlp_dim,
      vocab_size=config.vocab_size,
  )
  expected = {
      "large": (64, 1),
      "xl": (32, 2),
      "large_2d": (64, 1),
      "large_gpu_8": (8, 1),
      "large_gpu_1": (1, 1),
      "large_gpu_nodes_8": (16, 1),  # NUM_NODES = 2.
      "xl_gpu_nodes_8": (16, 1),
  }[name]
  assert (shape["data"], shape["model"]) == expected
  rules = "partitioning.standard_logical_axis_rules"
  if name.startswith("xl") or name == "large_2d":
    # XL's weights are also split over the data axis, as the planner advises.
    assert resolve(f"{rules}.parameter_partitioning_dims") == 2
  elif name == "large":
    # The paper's Large: each chip holds the whole model (T5X's default 1).
    with pytest.raises(ValueError, match="no bound parameters"):
      resolve(f"{rules}.parameter_partitioning_dims")


def test_learning_rate_is_the_papers(parse):
  resolve = parse(EXPERIMENTS["large"])
  schedule = resolve("trainer.Trainer.learning_rate_fn")
  # 1e-2 through the 10k warm-up steps, then 1e-2 * sqrt(10k / step).
  for step, rate in (
      (0, 1e-2),
      (5_000, 1e-2),
      (10_000, 1e-2),
      (40_000, 5e-3),
      (4_000_000, 1e-2 * math.sqrt(1 / 400)),
  ):
    assert float(schedule(step)) == pytest.approx(rate, rel=1e-5)
  assert resolve("adafactor.Adafactor.weight_decay_rate") is None


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_run_lengths_never_truncate_a_target(parse, name):
  resolve = parse(EXPERIMENTS[name])
  lengths = resolve("TASK_FEATURE_LENGTHS/macro.value")
  residues = preprocessors.residue_budget(lengths)
  assert lengths["targets"] >= max(
      preprocessors.max_denoise_targets(residues),
      preprocessors.max_complete_targets(residues),
  )
  assert not resolve("USE_CACHED_TASKS/macro.value")


def test_one_gin_line_selects_the_tokenizer_for_model_and_tasks(
    parse, tmp_path
):
  import seqio  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import hf_tokenizer  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import vocabularies  # pylint: disable=g-import-not-at-top

  tokens = list(vocabularies.default_tokens())
  tokens[3], tokens[4] = tokens[4], tokens[3]  # [NLU] <-> [S2S]
  (tmp_path / "spiece.model").write_bytes(
      hf_tokenizer.sentencepiece_model(vocabularies.Ankh3Vocabulary(tokens))
  )
  line = f"ANKH3_TOKENIZER = '{tmp_path / 'spiece.model'}'"
  resolve = parse(EXPERIMENTS["tiny"], [line])
  model = resolve("train_script.train.model")
  task = seqio.get_mixture_or_task(
      resolve("train/utils.DatasetConfig.mixture_or_task_name")
  )
  assert model.input_vocabulary.tokens == tuple(tokens)
  assert model.output_vocabulary == task.output_features["inputs"].vocabulary
  assert task.output_features["targets"].vocabulary.token_id("[NLU]") == 4
  # Without the line, both are the built-in table again.
  resolve = parse(EXPERIMENTS["tiny"])
  model = resolve("train_script.train.model")
  assert model.input_vocabulary.token_id("[NLU]") == 3
  assert model.input_vocabulary == task.output_features["inputs"].vocabulary
