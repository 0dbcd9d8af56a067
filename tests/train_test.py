"""The embedded default, run with `python -m t5x.train` (marker `t5x`).

Trains the tiny Ankh3 on the bundled sample as the README says (the session
fixture `default_run` of conftest.py), then checks that the loss falls, the
validation split is evaluated and checkpoints are written. That a resumed run
sees exactly the data of an uninterrupted one is tests/resume_test.py's.
"""

import glob
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from conftest import REPO
from conftest import scalars

pytestmark = [pytest.mark.t5x, pytest.mark.slow]

TASK = "ankh3_sample_multitask"
LOSS = "loss_per_nonpadding_target_token"


def test_default_run_logs_falling_loss_and_checkpoints(default_run):
  model_dir, _ = default_run
  loss = scalars(model_dir / "train", LOSS)
  assert sorted(loss) == list(range(50, 501, 50))
  assert loss[500] < 0.8 * loss[50], loss
  assert loss[500] < loss[150] < loss[50], loss
  checkpoints = sorted(
      os.path.basename(p) for p in glob.glob(str(model_dir / "checkpoint_*"))
  )
  # Every checkpoint is kept, the initial state (step 0) included.
  assert checkpoints == [
      "checkpoint_0",
      "checkpoint_100",
      "checkpoint_200",
      "checkpoint_300",
      "checkpoint_400",
      "checkpoint_500",
  ]
  assert (model_dir / "config.gin").exists()


def test_default_run_evaluates_the_validation_split(default_run):
  model_dir, _ = default_run
  loss = scalars(model_dir / "training_eval" / TASK, LOSS)
  assert sorted(loss) == [100, 200, 300, 400, 500]
  assert loss[500] < loss[100]


def test_checkpoint_params_can_be_read_back(default_run):
  from ankh3_tasks import checkpoints  # pylint: disable=g-import-not-at-top

  model_dir, _ = default_run
  early = checkpoints.load_params(str(model_dir / "checkpoint_100"))
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    late = checkpoints.load_params(str(model_dir / "checkpoint_500"))
  # Restored as numpy arrays, quietly (Orbax warned once per array when it
  # had to read the sharding from the files).
  assert [
      str(w.message) for w in caught if issubclass(w.category, UserWarning)
  ] == []
  assert isinstance(late["token_embedder"]["embedding"], np.ndarray)
  assert sorted(late) == ["decoder", "encoder", "token_embedder"]
  assert late["token_embedder"]["embedding"].shape == (256, 128)
  assert late["encoder"]["relpos_bias"]["rel_embedding"].shape == (4, 64)
  assert late["decoder"]["logits_dense"]["kernel"].shape == (128, 256)
  # Trained between the two checkpoints.
  assert not (
      early["decoder"]["logits_dense"]["kernel"]
      == late["decoder"]["logits_dense"]["kernel"]
  ).all()
  with pytest.raises(FileNotFoundError, match="No T5X checkpoint"):
    checkpoints.load_params(str(model_dir))


def test_trained_checkpoint_converts_to_hugging_face(default_run, tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  import numpy as np  # pylint: disable=g-import-not-at-top

  from ankh3_tasks import checkpoints  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import convert  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import embed  # pylint: disable=g-import-not-at-top

  model_dir, _ = default_run
  checkpoint = str(model_dir / "checkpoint_500")
  out = str(tmp_path / "hf")
  assert (
      convert.main([
          "t5x-to-hf",
          f"--checkpoint={checkpoint}",
          f"--gin_file={os.path.join(REPO, 'gin/models/ankh3_tiny.gin')}",
          f"--output={out}",
      ])
      == 0
  )
  hf = transformers.T5ForConditionalGeneration.from_pretrained(out)
  hf.eval()
  model = embed.load_model("gin/models/ankh3_tiny.gin", [REPO])
  params = checkpoints.load_params(checkpoint)
  inputs = np.array([[28, 3, 4, 5, 6, 7, 1, 0]], dtype=np.int32)
  targets = np.array([[255, 8, 9, 1]], dtype=np.int32)
  decoder_inputs = np.array([[0, 255, 8, 9]], dtype=np.int32)
  expected = model.module.apply(
      {"params": params},
      inputs,
      decoder_inputs,
      targets,
      enable_dropout=False,
  )
  with torch.no_grad():
    got = hf(
        input_ids=torch.tensor(inputs, dtype=torch.long),
        attention_mask=torch.tensor(inputs > 0, dtype=torch.long),
        decoder_input_ids=torch.tensor(decoder_inputs, dtype=torch.long),
    ).logits.numpy()
  np.testing.assert_allclose(got, np.asarray(expected), atol=1e-4)


def test_converter_survives_a_triton_that_would_crash_it(
    default_run, tmp_path
):
  # A CUDA build of torch brings triton; TensorFlow and triton in one process
  # die with signal 11. A stand-in triton that kills its process on import:
  # the converter's process must never import it.
  pytest.importorskip("torch")
  fake = tmp_path / "site" / "triton"
  fake.mkdir(parents=True)
  (fake / "__init__.py").write_text("import os\nos._exit(139)\n")
  out = tmp_path / "hf"
  env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
  run = subprocess.run(
      [
          sys.executable,
          "-m",
          "ankh3_tasks.convert",
          "t5x-to-hf",
          f"--checkpoint={default_run[0] / 'checkpoint_500'}",
          "--gin_file=gin/models/ankh3_tiny.gin",
          f"--output={out}",
      ],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert run.returncode == 0, (run.returncode, run.stderr[-3000:])
  assert (out / "model.safetensors").exists()
  # Importing the module changes nothing; the converter's commands do.
  imported = subprocess.run(
      [sys.executable, "-c", "import sys, ankh3_tasks.convert; "
       "print('triton' in sys.modules)"],
      cwd=REPO, capture_output=True, text=True, timeout=120,
  )
  assert imported.stdout.strip() == "False", imported.stderr[-2000:]
  # The stand-in does kill a process that imports it.
  probe = subprocess.run(
      [sys.executable, "-c", "import triton"], env=env, timeout=60
  )
  assert probe.returncode == 139


def test_embed_command_matches_the_hugging_face_encoder(default_run, tmp_path):
  torch = pytest.importorskip("torch")
  pytest.importorskip("transformers")
  import numpy as np  # pylint: disable=g-import-not-at-top

  from ankh3_tasks import convert  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import embed  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import vocabularies  # pylint: disable=g-import-not-at-top
  from conftest import write_fasta  # pylint: disable=g-import-not-at-top

  model_dir, _ = default_run
  checkpoint = str(model_dir / "checkpoint_500")
  gin_file = os.path.join(REPO, "gin/models/ankh3_tiny.gin")
  proteins = {"p1": "MKTAYIAKQRQISFVKSHFSRQ", "p2": "GSHMLEDPVDAFQ"}
  fasta = write_fasta(
      tmp_path / "in.fasta", [(k, [v]) for k, v in proteins.items()]
  )
  out = str(tmp_path / "emb.npz")
  assert (
      embed.main([
          f"--checkpoint={checkpoint}",
          f"--gin_file={gin_file}",
          f"--input={fasta}",
          f"--output={out}",
          "--task_token=S2S",
      ])
      == 0
  )
  assert (
      convert.main([
          "t5x-to-hf",
          f"--checkpoint={checkpoint}",
          f"--gin_file={gin_file}",
          f"--output={tmp_path / 'hf'}",
          "--encoder_only",
      ])
      == 0
  )
  import transformers  # pylint: disable=g-import-not-at-top

  encoder = transformers.T5EncoderModel.from_pretrained(str(tmp_path / "hf"))
  encoder.eval()
  vocab = vocabularies.Ankh3Vocabulary()
  written = np.load(out)
  for record_id, sequence in proteins.items():
    ids = [vocab.token_id("[S2S]"), *vocab.encode(sequence), 1]
    with torch.no_grad():
      hidden = encoder(input_ids=torch.tensor([ids])).last_hidden_state
    expected = hidden.numpy()[0, 1:-1]
    got = written[f"per_residue/{record_id}"]
    assert got.shape == (len(sequence), 128)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(
        written[f"mean/{record_id}"], expected.mean(axis=0), atol=1e-4
    )
