"""Tests of the run planner (`python -m ankh3_tasks.plan`).

The arithmetic is tested without T5X; the paper's two plans, the memory
model against T5X's train state and JAX's autodiff, and the command line
need T5X (marker `t5x`).
"""

import importlib.util
import json
import math
import os
import types

import pytest

from ankh3_tasks import hardware
from ankh3_tasks import plan
from ankh3_tasks import t5x_adapter

from conftest import REPO

LARGE_PARAMS = 1_879_049_216
XL_PARAMS = 5_730_907_136
LARGE_GIN = "gin/experiments/ankh3_large_pretrain.gin"
XL_GIN = "gin/experiments/ankh3_xl_pretrain.gin"


def _config(**sizes):
  """An Ankh3Config stand-in: Large unless `sizes` say otherwise."""
  values = dict(
      emb_dim=1536,
      num_heads=16,
      head_dim=64,
      mlp_dim=3840,
      num_encoder_layers=48,
      num_decoder_layers=24,
      mlp_activations=("silu", "linear"),
      vocab_size=256,
      relative_attention_num_buckets=64,
      dtype="bfloat16",
      float32_attention_logits=False,
  )
  values.update(sizes)
  return types.SimpleNamespace(**values)


XL_SIZES = dict(emb_dim=2560, num_heads=32, mlp_dim=6720)


def test_a_remat_policy_is_noted_beside_the_estimate():
  # pylint: disable=protected-access
  assert plan._config_notes(_config(), 0.0) == []
  notes = plan._config_notes(_config(remat_policy="full"), 0.0)
  assert len(notes) == 1
  assert notes[0].startswith("remat_policy 'full'")
  assert "compile_check" in notes[0]


# --------------------------------------------------------------- no T5X ---


def test_topologies():
  v4 = hardware.TOPOLOGIES["v4-128"]
  assert (v4.devices, v4.hbm_bytes, v4.peak_flops) == (64, 32 * 2**30, 275e12)
  for name, topology in hardware.TOPOLOGIES.items():
    number = int(name.split("-")[1]) if "-" in name else None
    if name.startswith(("v4-", "v5p-")):
      assert topology.devices == number // 2  # Two TensorCores per chip.
    elif name.startswith(("v5e-", "v6e-")):
      assert topology.devices == number
    else:  # GPUs: NxMODEL.
      assert topology.devices == int(name.split("x")[0])
    assert 0 < topology.usable_bytes <= topology.hbm_bytes
  assert hardware.TOPOLOGIES["8xH100"].peak_flops == 989e12
  assert hardware.TOPOLOGIES["v5e-256"].hbm_bytes == 16 * 2**30


def test_flops_are_the_benchmarks_and_its_published_figures():
  spec = importlib.util.spec_from_file_location(
      "train_step", os.path.join(REPO, "benchmarks", "train_step.py")
  )
  train_step = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(train_step)
  assert train_step.model_flops is plan.model_flops
  # docs/benchmarks.md: equal to the matmuls of XLA's lowered train step.
  large = plan.model_flops(_config(), 1024, 512, 320)["train"]
  xl = plan.model_flops(_config(**XL_SIZES), 1024, 512, 320)["train"]
  assert large == pytest.approx(5.380e15, rel=5e-4)
  assert xl == pytest.approx(1.615e16, rel=5e-4)


def test_activation_bytes_match_jax_residuals_of_large_layers():
  # Residuals of jax.vjp of T5X's loss for one Large layer, per row at
  # 512 / 320, recorded with `saved_residual_bytes` (the t5x test below
  # checks the formula against it on the tiny model).
  per_row = plan.activation_bytes_per_row(_config(), 512, 320)
  assert per_row["encoder layer"] == 63_479_808
  assert per_row["decoder layer"] == 55_557_632
  assert per_row["other"] == 18_065_664
  assert per_row["total"] == 48 * 63_479_808 + 24 * 55_557_632 + 18_065_664


def test_model_axis_halves_only_the_head_and_mlp_terms():
  one = plan.activation_bytes_per_row(_config(), 512, 320)
  two = plan.activation_bytes_per_row(
      _config(), 512, 320, {"heads": 2, "mlp": 2}
  )
  # Per encoder position, the two layer norms' d-vectors are not sharded.
  norms = 512 * 2 * ((2 * 4 + 2 * 2) * 1536 + 2 * 4)
  assert two["encoder layer"] - norms == (one["encoder layer"] - norms) // 2
  assert two["other"] == one["other"]


def _state(params, weights=None, optimizer=0):
  return plan.StateSizes(
      params=params,
      weights=4 * params if weights is None else weights,
      replicated_params=0,
      optimizer=optimizer,
  )


def test_paper_time_arithmetic():
  result = plan.plan_run(
      _config(),
      _state(LARGE_PARAMS),
      hardware.TOPOLOGIES["v4-128"],
      batch_size=1024,
      inputs_length=512,
      targets_length=320,
      steps=4_000_000,
      mfu=0.3,
  )
  flops = plan.model_flops(_config(), 1024, 512, 320)["train"]
  assert result["flops_per_step"] == flops
  assert result["tokens_per_step"] == 1024 * 832
  assert result["step_seconds"] == pytest.approx(flops / (64 * 275e12 * 0.3))
  assert result["days"] == pytest.approx(
      4_000_000 * result["step_seconds"] / 86400
  )
  assert result["days"] == pytest.approx(47.2, abs=0.05)
  assert result["mesh"] == {"data": 64, "model": 1}
  assert result["rows_per_replica"] == 16


@pytest.mark.parametrize(
    "sizes, kwargs, message",
    [
        ({}, dict(batch_size=1000), "Batch size 1000 does not divide over the"),
        (
            XL_SIZES,
            dict(num_partitions=3),
            "num_partitions 3 does not divide the 64 devices",
        ),
        (
            {},
            dict(microbatches=3),
            "3 microbatches do not divide the 16 rows of a data replica",
        ),
        (
            dict(num_heads=12),
            dict(num_partitions=8),
            "num_heads 12 does not divide over the 8-way",
        ),
        ({}, dict(mfu=1.5), "MFU 1.5"),
    ],
)
def test_refusals_name_the_numbers(sizes, kwargs, message):
  settings = dict(batch_size=1024, inputs_length=512, targets_length=320)
  settings.update(kwargs)
  with pytest.raises(ValueError, match=message):
    plan.plan_run(
        _config(**sizes),
        _state(LARGE_PARAMS),
        hardware.TOPOLOGIES["v4-128"],
        **settings,
    )


@pytest.mark.parametrize(
    "rows, capacity, expected",
    [
        (16, 20 + 2 * 16, 1),  # Everything at once fits.
        (16, 20 + 2 * 16 - 1, 2),
        # At 2 microbatches the accumulator (10) joins: 30 + 16 > 45.
        (16, 45, 4),
        (16, 30 + 2, 16),  # One row per microbatch.
        (16, 30 + 1, None),  # Not even one row fits.
        (12, 30 + 6, 4),  # 8 does not divide 12: 4 is the last candidate.
        (12, 30 + 5, None),
    ],
)
def test_suggested_microbatches(rows, capacity, expected):
  # 10 bytes of weights, so 10 of gradients and 10 of accumulator; 2 bytes
  # of activations per row.
  assert (
      plan.suggest_microbatches(
          weights=10,
          optimizer=0,
          activations_per_row=2,
          rows=rows,
          capacity=capacity,
      )
      == expected
  )


def test_suggestion_is_smallest_power_of_two_that_fits():
  for capacity in range(30, 80):
    m = plan.suggest_microbatches(
        weights=10,
        optimizer=0,
        activations_per_row=2,
        rows=16,
        capacity=capacity,
    )
    totals = {
        k: plan.memory_bytes(
            weights=10,
            optimizer=0,
            activations_per_row=2,
            rows=16,
            microbatches=k,
        )["total"]
        for k in (1, 2, 4, 8, 16)
    }
    fitting = [k for k, total in totals.items() if total <= capacity]
    assert m == (min(fitting) if fitting else None)


# ------------------------------------------------------------ with T5X ---


@pytest.fixture(scope="module")
def runs():
  return {
      "large": t5x_adapter.load_gin([LARGE_GIN]),
      "xl": t5x_adapter.load_gin([XL_GIN]),
      # XL with T5X's default 1-D parameter sharding, as the paper states
      # its setup (2-way model parallel, nothing more).
      "xl_1d": t5x_adapter.load_gin(
          [XL_GIN],
          [
              "partitioning.standard_logical_axis_rules."
              "parameter_partitioning_dims = 1"
          ],
      ),
  }


def _plan(run, **overrides):
  s = {**run.settings, **overrides}
  shape = plan.check_run(
      run.model.module.config,
      num_devices=64,
      num_partitions=s["num_partitions"],
      batch_size=s["batch_size"],
      microbatches=s["microbatches"] or 1,
  )
  return plan.plan_run(
      run.model.module.config,
      plan.state_sizes(run.model, shape, run.rules),
      hardware.TOPOLOGIES["v4-128"],
      batch_size=s["batch_size"],
      inputs_length=s["inputs_length"],
      targets_length=s["targets_length"],
      num_partitions=s["num_partitions"],
      microbatches=s["microbatches"] or 1,
      steps=s["steps"],
      activation_shards=plan.activation_shards(shape, run.rules),
  )


@pytest.mark.t5x
def test_gin_settings_are_the_papers(runs):
  # The microbatches are the fewest the TPU compiler fits (docs/plan.md).
  for name, partitions, steps, microbatches in (
      ("large", 1, 4_000_000, 1),
      ("xl", 2, 5_000_000, 2),
  ):
    assert runs[name].settings == {
        "batch_size": 1024,
        "inputs_length": 512,
        "targets_length": 320,
        "num_partitions": partitions,
        "microbatches": microbatches,
        "steps": steps,
        "num_devices": 64,
    }


@pytest.mark.t5x
def test_large_data_parallel_plan(runs):
  result = _plan(runs["large"], microbatches=None)
  config = runs["large"].model.module.config
  assert result["params"] == LARGE_PARAMS
  assert result["mesh"] == {"data": 64, "model": 1}
  assert result["flops_per_step"] == (
      plan.model_flops(config, 1024, 512, 320)["train"]
  )
  memory = result["memory"]
  assert memory["weights"] == 4 * LARGE_PARAMS  # All of it, on every chip.
  assert memory["gradients"] == memory["weights"]
  assert memory["accumulator"] == 0
  assert memory["activations"] == 16 * result["activation_bytes_per_row"]
  assert not result["fits"]
  assert result["suggested_microbatches"] == 8


@pytest.mark.t5x
def test_xl_model_parallel_plan(runs):
  result = _plan(runs["xl_1d"], microbatches=None)
  config = runs["xl_1d"].model.module.config
  assert result["params"] == XL_PARAMS
  assert result["mesh"] == {"data": 32, "model": 2}
  # Only the layer norms are whole on both chips of a model group: two per
  # encoder layer, three per decoder layer, one after each stack.
  norms = config.emb_dim * (
      2 * config.num_encoder_layers + 3 * config.num_decoder_layers + 2
  )
  assert result["replicated_params"] == norms == 435_200
  weights = result["memory"]["weights"]
  assert 4 * XL_PARAMS / 2 < weights < 4 * XL_PARAMS
  assert weights == 4 * ((XL_PARAMS - norms) // 2 + norms)
  assert result["rows_per_replica"] == 32
  # Weights, gradients and an accumulator alone exceed 30.75 GiB.
  assert 3 * weights > hardware.TOPOLOGIES["v4-128"].usable_bytes
  assert result["suggested_microbatches"] is None
  assert (
      _plan(runs["xl_1d"], num_partitions=4, microbatches=None)[
          "suggested_microbatches"
      ]
      == 16
  )
  # The weights also split over the 32-way data axis, as shipped, and 8
  # microbatches of 4 rows: the planner's fit.
  shipped = _plan(runs["xl"], microbatches=8)
  assert shipped["fits"]
  assert shipped["memory"]["weights"] < weights / 16


@pytest.mark.t5x
def test_adafactor_state_is_t5x_factoring(runs):
  # T5X's Adafactor (no momentum): a matrix whose smaller dimension is at
  # least 128 keeps a row and a column vector, anything else a full second
  # moment; the unused slots are stored as shape (1,); plus the step.
  import jax  # pylint: disable=g-import-not-at-top

  model = runs["large"].model
  # pylint: disable-next=protected-access
  params = t5x_adapter.abstract_train_state(model).params
  expected = 4  # The step, int32.
  for leaf in jax.tree_util.tree_leaves(params):
    shape = leaf.shape
    if len(shape) == 2 and min(shape) >= 128:
      expected += 4 * (sum(shape) + 2)
    else:
      expected += 4 * (math.prod(shape) + 3)
  sizes = plan.state_sizes(model, {"data": 64, "model": 1}, runs["large"].rules)
  assert sizes.optimizer == expected
  assert sizes.optimizer < 0.01 * sizes.weights


@pytest.mark.t5x
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_activation_formula_is_what_autodiff_saves(dtype):
  run = t5x_adapter.load_gin(
      ["gin/models/ankh3_tiny.gin"], [f"network.Ankh3Config.dtype = '{dtype}'"]
  )
  saved = plan.saved_residual_bytes(run.model, 2, 128, 80)
  saved -= plan.saved_residual_bytes(run.model, 1, 128, 80)
  assert (
      saved
      == plan.activation_bytes_per_row(run.model.module.config, 128, 80)[
          "total"
      ]
  )


@pytest.mark.t5x
def test_cli_prints_a_plan(capsys):
  assert (
      plan.main(
          [f"--gin_file={LARGE_GIN}", "--gin.NUM_MICROBATCHES=8", "--json"]
      )
      == 0
  )
  result = json.loads(capsys.readouterr().out)
  assert result["params"] == LARGE_PARAMS
  assert result["memory"]["weights"] == 4 * LARGE_PARAMS
  assert (result["fits"], result["suggested_microbatches"]) == (True, 8)
  assert result["steps"] == 4_000_000
  # As shipped (1 microbatch, what the TPU compiler fits): the planner's
  # estimate, which counts every saved activation as live, does not.
  assert plan.main([f"--gin_file={LARGE_GIN}", "--json"]) == 0
  result = json.loads(capsys.readouterr().out)
  assert result["microbatches"] == 1
  assert (result["fits"], result["suggested_microbatches"]) == (False, 8)
  assert "DOES NOT FIT in 30.75 GiB usable" in plan.format_plan(result)


@pytest.mark.t5x
def test_text_plan_with_the_suggested_microbatches(runs):
  result = _plan(runs["large"], microbatches=8)
  assert result["fits"]
  assert result["memory"]["accumulator"] == 4 * LARGE_PARAMS
  text = plan.format_plan(result)
  assert "FITS in 30.75 GiB usable" in text
  assert "DOES NOT FIT" not in text
  assert "1,024 rows x (512 + 320) = 851,968 tokens per step" in text
  assert "4,000,000 steps: 47.2 days at an ASSUMED 30% MFU" in text


@pytest.mark.t5x
@pytest.mark.parametrize(
    "flags, message",
    [
        ([f"--gin_file={LARGE_GIN}", "--batch_size=1000"], "Batch size 1000"),
        ([f"--gin_file={XL_GIN}", "--num_partitions=3"], "num_partitions 3"),
        (
            [f"--gin_file={LARGE_GIN}", "--gin.NUM_MICROBATCHES=3"],
            "3 microbatches do not divide the 16 rows",
        ),
    ],
)
def test_cli_refuses(capsys, flags, message):
  assert plan.main(flags) == 1
  assert message in capsys.readouterr().err


def test_packing_steps_for_the_papers_ids():
  result = plan.plan_run(
      _config(),
      _state(LARGE_PARAMS),
      hardware.TOPOLOGIES["v4-128"],
      batch_size=1024,
      inputs_length=512,
      targets_length=320,
      steps=4_000_000,
      fill=0.8,
  )
  packing = result["packing"]
  assert packing["useful_input_ids_per_step"] == pytest.approx(1024 * 512 * 0.8)
  # 4M steps at seqio's fill see as many input ids as 4M x 0.665 / 0.8.
  same = math.ceil(4_000_000 * plan.SEQIO_PACKING_FILL / 0.8)
  assert packing["steps_for_reference_ids"] == same
  assert packing["days_saved"] == pytest.approx(
      (4_000_000 - same) * result["step_seconds"] / 86400
  )
  assert packing["days_for_reference_ids"] + packing[
      "days_saved"
  ] == pytest.approx(result["days"])
  assert f"--gin.TRAIN_STEPS={same}" in plan.format_plan(result)
  # At seqio's own fill nothing is saved.
  same_fill = plan.packing_plan(1024, 512, 100, 1.0, plan.SEQIO_PACKING_FILL)
  assert same_fill["steps_for_reference_ids"] == 100
  with pytest.raises(ValueError, match="got 1.5"):
    plan.packing_plan(1024, 512, 100, 1.0, fill=1.5)


@pytest.mark.t5x
@pytest.mark.parametrize(
    "flags",
    [
        [f"--gin_file={LARGE_GIN}", "--topology=v9-8"],
        [f"--gin_file={LARGE_GIN}", "--fill=0"],
        ["--gin_file=gin/models/ankh3_large.gin"],  # No batch or lengths.
        [f"--gin_file={LARGE_GIN}", "--gin.NUM_MICROBATCHES"],
    ],
)
def test_cli_rejects_bad_arguments(flags):
  with pytest.raises(SystemExit) as exit_:
    plan.main(flags)
  assert exit_.value.code == 2


@pytest.mark.t5x
def test_cli_plans_a_model_file_with_flags(capsys):
  flags = [
      "--gin_file=gin/models/ankh3_tiny.gin",
      "--topology=8xH100",
      "--batch_size=64",
      "--inputs_length=128",
      "--targets_length=80",
      "--json",
  ]
  assert plan.main(flags) == 0
  result = json.loads(capsys.readouterr().out)
  assert result["params"] == 1_182_208
  assert result["mesh"] == {"data": 8, "model": 1}
  assert result["rows_per_replica"] == 8
  assert result["fits"] and result["suggested_microbatches"] == 1
  assert result["steps"] is None and result["days"] is None
  assert result["topology"]["usable_bytes"] == 60 * 2**30
  flags[1] = "--topology=v5litepod-16"  # gcloud's name for v5e-16.
  assert plan.main(flags) == 0
  assert json.loads(capsys.readouterr().out)["topology"]["name"] == "v5e-16"


def test_h100_and_h200_topologies():
  for count in (1, 8, 16, 32, 64):
    h100 = hardware.TOPOLOGIES[f"{count}xH100"]
    h200 = hardware.TOPOLOGIES[f"{count}xH200"]
    assert (h100.devices, h200.devices) == (count, count)
    # Datasheets: 80 GB and 141 GB; 989 TFLOP/s dense bf16 for both SXM parts.
    assert h100.hbm_bytes == 80 * 2**30
    assert h200.hbm_bytes == 141 * 2**30
    assert h100.peak_flops == h200.peak_flops == 989e12
    # JAX's default XLA_PYTHON_CLIENT_MEM_FRACTION.
    assert h100.usable_bytes == 60 * 2**30
    assert h200.usable_bytes == int(0.75 * 141 * 2**30)


def test_with_mem_fraction():
  h200 = hardware.with_mem_fraction(hardware.TOPOLOGIES["8xH200"], 0.9)
  assert h200.usable_bytes == int(0.9 * 141 * 2**30)
  assert h200.hbm_bytes == hardware.TOPOLOGIES["8xH200"].hbm_bytes
  with pytest.raises(ValueError, match="not a GPU topology"):
    hardware.with_mem_fraction(hardware.TOPOLOGIES["v4-128"], 0.9)
  with pytest.raises(ValueError, match="not in"):
    hardware.with_mem_fraction(hardware.TOPOLOGIES["1xH100"], 1.5)


def test_gpu_devices():
  assert hardware.gpu_devices(1) == 8
  assert hardware.gpu_devices(4) == 32
  assert hardware.gpu_devices(nodes=2, gpus_per_node=4) == 8
  with pytest.raises(ValueError, match="0 node"):
    hardware.gpu_devices(0)


@pytest.mark.t5x
def test_cli_plans_large_on_one_h200(capsys):
  flags = [
      f"--gin_file={LARGE_GIN}",
      "--topology=1xH200",
      "--mem_fraction=0.9",
      "--json",
  ]
  assert plan.main(flags) == 0
  result = json.loads(capsys.readouterr().out)
  assert result["mesh"] == {"data": 1, "model": 1}
  assert result["topology"]["usable_bytes"] == int(0.9 * 141 * 2**30)
  assert result["rows_per_replica"] == 1024
  # The whole batch does not fit one GPU; microbatches do.
  assert not result["fits"]
  assert result["suggested_microbatches"] > 1
  assert result["suggested_total"] <= result["topology"]["usable_bytes"]


@pytest.mark.t5x
def test_cli_refuses_mem_fraction_on_a_tpu():
  with pytest.raises(SystemExit) as exit_:
    plan.main([f"--gin_file={LARGE_GIN}", "--mem_fraction=0.9"])
  assert exit_.value.code == 2


@pytest.mark.t5x
def test_cli_leaves_the_process_log_level_as_it_found_it():
  # plan quiets absl while it builds the model; a test or command that runs
  # after it in the same process must still see warnings.
  from absl import logging  # pylint: disable=g-import-not-at-top

  previous = logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)
  try:
    assert plan.main([f"--gin_file={LARGE_GIN}", "--json"]) == 0
    assert logging.get_verbosity() == logging.WARNING
  finally:
    logging.set_verbosity(previous)
