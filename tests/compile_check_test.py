"""Tests of `python -m ankh3_tasks.compile_check`: the TPU compiler's verdict.

The compiles use libtpu's compile-only TPU devices (a v4-8 here) and run in
subprocesses, so this test process never loads the TPU plugin. They need T5X
and libtpu (`tools/setup.sh --libtpu`) and skip, saying which, without.
"""

import json

import pytest

from ankh3_tasks import cli
from ankh3_tasks import compile_check
from ankh3_tasks import hardware
from conftest import run_module
from conftest import run_python

TINY = "gin/experiments/ankh3_tiny_sample.gin"
needs_libtpu = pytest.mark.skipif(
    compile_check.libtpu_path() is None,
    reason="needs libtpu: bash tools/setup.sh --libtpu",
)

# Several compiles in one process (T5X, TensorFlow and JAX load once).
_COMPILES = """
import json, sys
from ankh3_tasks import compile_check as c
tpu = c.tpu_slices()["v4-8"]
gin = ["gin/experiments/ankh3_tiny_sample.gin"]
results = {
    "first": c.compile_train_step(gin, [], tpu),
    "two": c.compile_train_step(gin, ["NUM_MICROBATCHES = 2"], tpu),
    "too_big": c.compile_train_step(gin, ["BATCH_SIZE = 65536"], tpu),
}
json.dump(results, sys.stdout)
"""


@pytest.fixture(scope="module")
def compiles():
  return json.loads(run_python("-c", _COMPILES).stdout)


def test_the_slices_are_the_planners_with_their_chips():
  slices = compile_check.tpu_slices()
  for name in ("v4-8", "v4-16", "v4-32", "v4-64", "v4-128"):
    assert name in slices
  for name, tpu in slices.items():
    assert tpu.topology is hardware.TOPOLOGIES[name]
    chips = 1
    for n in tpu.chips.split("x"):
      chips *= int(n)
    assert chips == tpu.topology.devices, name
    want = "megacore" if tpu.family in ("v4", "v5p") else "default"
    assert tpu.chip_config_name == want
  assert slices["v4-128"].chips == "4x4x4"


def test_out_of_memory_message_is_read():
  message = (
      "jax.errors.JaxRuntimeError: RESOURCE_EXHAUSTED: Ran out of memory on "
      "HBM, the total memory required for HLO temporaries (54.53G) exceeds "
      "available HBM (30.75G).\nmore"
  )
  found = compile_check.out_of_memory(message)
  assert found["what"] == "HLO temporaries"
  assert found["required"] == int(54.53 * 2**30)
  assert found["available"] == int(30.75 * 2**30)
  assert found["message"].startswith("RESOURCE_EXHAUSTED: Ran out")
  assert found["message"].endswith("(30.75G).")
  assert compile_check.out_of_memory("INVALID_ARGUMENT: bad sharding") is None


@pytest.mark.t5x  # The gin flags are split with T5X's own code.
def test_unknown_topology_is_refused_naming_those_it_knows(capsys):
  code = cli.run(
      compile_check.main, [f"--gin_file={TINY}", "--topology=v4-3"]
  )
  assert code == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1
  assert err[0].startswith("refused: unknown topology 'v4-3'")
  assert "v4-8, v4-16" in err[0] and "v6e-256" in err[0]


@pytest.mark.t5x
def test_without_libtpu_one_line_says_how_to_install(monkeypatch, capsys):
  monkeypatch.setattr(compile_check, "libtpu_path", lambda: None)
  code = cli.run(compile_check.main, [f"--gin_file={TINY}", "--topology=v4-8"])
  assert code == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1
  assert "bash tools/setup.sh --libtpu" in err[0]
  assert "libtpu==0.0.42" in err[0]


@pytest.mark.t5x
@needs_libtpu
def test_tiny_model_fits_a_v4_8(compiles):
  result = compiles["first"]
  assert result["device_kind"] == "TPU v4"
  assert result["devices"] == 4
  assert result["mesh"] == {"data": 4, "model": 1}
  assert (result["rows_per_replica"], result["microbatches"]) == (4, 1)
  memory = result["memory"]
  assert memory["arguments"] > 0 and memory["code"] > 0
  assert memory["temporaries"] >= 0
  # The train state is donated: its outputs reuse the arguments' buffers.
  assert 0 < memory["aliased"] <= memory["arguments"]
  assert memory["arguments"] <= memory["peak"] < result["usable"]
  assert result["fits"]
  assert result["usable"] == hardware.TOPOLOGIES["v4-8"].usable_bytes
  # The compiler counts every op; the planner's model counts the matmuls.
  ratio = result["compiler_flops_per_chip"] / result["model_flops_per_chip"]
  assert 0.9 < ratio < 1.3, ratio
  assert result["flops_ratio"] == pytest.approx(ratio)
  # The planner's estimate of the same run, beside the compiler's figure.
  assert result["planner_estimate"] > memory["arguments"]


@pytest.mark.t5x
@needs_libtpu
def test_microbatches_are_the_gins(compiles):
  one, two = compiles["first"], compiles["two"]
  assert two["microbatches"] == 2
  # The loop over microbatches holds half the batch: its body, counted
  # once, is half the step.
  ratio = two["compiler_flops_per_chip"] / one["compiler_flops_per_chip"]
  assert ratio == pytest.approx(0.5, rel=0.05)
  assert two["model_flops_per_chip"] == one["model_flops_per_chip"]
  assert two["flops_ratio"] == pytest.approx(one["flops_ratio"], rel=0.05)


@pytest.mark.t5x
@needs_libtpu
def test_a_batch_too_large_does_not_fit_and_says_why(compiles):
  result = compiles["too_big"]
  assert result["rows_per_replica"] == 65536 // 4
  assert result["fits"] is False
  memory = result["memory"]
  assert memory["peak"] is None
  assert memory["required"] > result["usable"]
  assert "Ran out of memory" in memory["refused"]
  text = compile_check.format_result(result)
  assert "DOES NOT FIT: needs at least" in text
  assert "FITS in" not in text


@pytest.mark.t5x
@needs_libtpu
def test_search_finds_the_fewest_that_fit_and_compiles_repeat(compiles):
  one = compiles["first"]["memory"]["peak"]
  two = compiles["two"]["memory"]["peak"]
  assert two < one
  # A margin that leaves room for the 2-microbatch step but not for 1.
  usable = compiles["first"]["usable"]
  margin = 1 - (one + two) / 2 / usable
  run = run_module(
      "ankh3_tasks.compile_check",
      f"--gin_file={TINY}",
      "--topology=v4-8",
      "--search_microbatches",
      f"--margin={margin!r}",
      "--json",
  )
  found = json.loads(run.stdout)
  assert found["fewest"] == 2
  assert [r["microbatches"] for r in found["tried"]] == [1, 2]
  # Compiled again in another process: the same figures to the byte.
  before = (compiles["first"], compiles["two"])
  for tried, earlier in zip(found["tried"], before):
    assert tried["memory"] == earlier["memory"]
    flops = "compiler_flops_per_chip"
    assert tried[flops] == earlier[flops]
