"""Tests of `ankh3_tasks.downstream.train` on small synthetic tasks.

Labels are a known function of the embeddings, so a head that trains well
must learn them: residue class = argmax of the first 3 embedding features;
protein value = the mean first feature of its residues (each protein shifts
it); contact = residues drawn around the same centre (features 0-7).
"""

import dataclasses

import jax
import numpy as np
import pytest
from scipy import stats

from ankh3_tasks.downstream import convbert
from ankh3_tasks.downstream import train

D = 16
# Small and quick: the paper's settings bar epochs, warm-up and accumulation.
CONFIG = train.TrainConfig(epochs=6, warmup_steps=4, grad_accumulation=4)
HEAD = convbert.HeadConfig()


def _lengths(rng, n):
  return rng.integers(8, 48, size=n)


def _residue_data(seed, n):
  rng = np.random.default_rng(seed)
  out = []
  for length in _lengths(rng, n):
    x = rng.normal(size=(length, D)).astype(np.float32)
    labels = np.argmax(x[:, :3], axis=1).astype(np.int32)
    labels[rng.random(length) < 0.1] = -1  # Unlabelled residues.
    out.append((x, labels))
  return out


def _protein_data(seed, n):
  rng = np.random.default_rng(seed)
  out = []
  for length in _lengths(rng, n):
    x = rng.normal(size=(length, D)).astype(np.float32)
    x[:, 0] += 2 * rng.normal()  # A shift shared by the protein's residues.
    out.append((x, np.float32(x[:, 0].mean())))
  return out


def _contact_data(seed, n):
  rng = np.random.default_rng(seed)
  out = []
  for length in _lengths(rng, n):
    # Residues of a group share features 0-7; the others are noise.
    group = rng.integers(0, 4, size=length)
    x = rng.normal(size=(length, D)).astype(np.float32)
    x[:, :8] = rng.normal(size=(4, 8))[group] + 0.2 * x[:, :8]
    contacts = (group[:, None] == group[None, :]).astype(np.int8)
    contacts[rng.random((length, length)) < 0.05] = -1  # Unknown pairs.
    contacts = np.minimum(contacts, contacts.T)
    out.append((x, contacts))
  return out


def _accuracy(predictions, labels):
  hits = [(p == y)[y >= 0] for p, y in zip(predictions, labels)]
  return float(np.mean(np.concatenate(hits)))


def _spearman(predictions, labels):
  return float(stats.spearmanr(predictions, labels).statistic)


def _far_pairs(length):
  i, j = np.triu_indices(length, k=6)
  return i, j


def _contact_auc(predictions, labels):
  scores, truth = [], []
  for p, y in zip(predictions, labels):
    i, j = _far_pairs(len(y))
    keep = y[i, j] >= 0
    scores.append(p[i, j][keep])
    truth.append(y[i, j][keep])
  scores, truth = np.concatenate(scores), np.concatenate(truth)
  ranks = stats.rankdata(scores)
  positives = truth == 1
  n_pos, n_neg = positives.sum(), (~positives).sum()
  return float(
      (ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
  )


def test_defaults_are_the_papers():
  config = train.TrainConfig()
  assert (config.learning_rate, config.warmup_steps, config.epochs) == (
      1e-2,
      1000,
      20,
  )
  assert (config.batch_size, config.grad_accumulation) == (1, 16)
  assert config.weight_decay == 0.0
  assert config.seeds == (7, 0, 42)
  head = convbert.HeadConfig()
  assert (head.num_layers, head.num_heads, head.ffn_dim(1536)) == (1, 4, 768)
  assert (head.dropout, head.kernel_size) == (0.1, 7)


def test_schedule_warms_up_then_decays_linearly():
  config = train.TrainConfig(learning_rate=1.0, warmup_steps=10)
  schedule = train.learning_rate_schedule(config, total_steps=30)
  values = [float(schedule(s)) for s in (0, 5, 10, 20, 30, 40)]
  np.testing.assert_allclose(values, [0.0, 0.5, 1.0, 0.5, 0.0, 0.0])


def test_residue_classes_are_learned():
  result = train.fit(
      "residue",
      3,
      _residue_data(0, 48),
      _residue_data(1, 16),
      metric_fn=_accuracy,
      train_config=CONFIG,
      progress=False,
  )
  assert result.best_valid_metric > 0.8  # Chance: 1/3.
  assert len(result.history) == CONFIG.epochs
  assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
  test = _residue_data(2, 8)
  predictions = train.predict("residue", result.params, test)
  assert [p.shape for p in predictions] == [y.shape for _, y in test]
  assert _accuracy(predictions, [y for _, y in test]) > 0.8


def test_protein_values_are_learned_and_runs_are_reproducible():
  data, valid = _protein_data(0, 48), _protein_data(1, 16)
  run = lambda seed: train.fit(
      "protein",
      1,
      data,
      valid,
      metric_fn=_spearman,
      train_config=CONFIG,
      seed=seed,
      progress=False,
  )
  first, again, other = run(7), run(7), run(0)
  assert first.best_valid_metric > 0.8
  assert first.history == again.history
  np.testing.assert_array_equal(
      first.params["decoder"]["kernel"], again.params["decoder"]["kernel"]
  )
  assert other.history != first.history
  best = max(first.history, key=lambda h: h["valid_metric"])
  assert first.best_epoch == best["epoch"]
  predictions = train.predict("protein", first.params, valid)
  assert _spearman(predictions, [y for _, y in valid]) == pytest.approx(
      first.best_valid_metric
  )


def test_contacts_are_learned():
  result = train.fit(
      "contact",
      1,
      _contact_data(0, 40),
      _contact_data(1, 12),
      metric_fn=_contact_auc,
      train_config=CONFIG,
      progress=False,
  )
  assert result.best_valid_metric > 0.9  # Chance: 0.5.
  ((x, y),) = _contact_data(3, 1)
  (p,) = train.predict("contact", result.params, [x])
  assert p.shape == y.shape
  np.testing.assert_allclose(p, p.T, atol=1e-6)
  assert np.all((p >= 0) & (p <= 1))


@pytest.mark.parametrize(
    "keep_best,higher_is_better,want",
    [(True, True, 0), (False, True, -1), (True, False, -1)],
)
def test_params_of_the_best_or_last_epoch(keep_best, higher_is_better, want):
  data, valid = _protein_data(0, 8), _protein_data(1, 4)
  seen = []

  def metric_fn(predictions, labels):
    del labels
    seen.append(predictions)
    return -float(len(seen))  # Each epoch scores lower than the last.

  result = train.fit(
      "protein",
      1,
      data,
      valid,
      metric_fn=metric_fn,
      train_config=dataclasses.replace(CONFIG, epochs=3, keep_best=keep_best),
      higher_is_better=higher_is_better,
      progress=False,
  )
  assert len(seen) == 3
  assert result.best_epoch == (1 if higher_is_better else 3)
  assert result.best_valid_metric == (-1.0 if higher_is_better else -3.0)
  np.testing.assert_array_equal(
      train.predict("protein", result.params, valid), seen[want]
  )


def test_bad_inputs_fail_fast():
  data = _residue_data(0, 4)
  fit = lambda *a, **k: train.fit(
      *a, metric_fn=_accuracy, train_config=CONFIG, progress=False, **k
  )
  with pytest.raises(ValueError, match="kind"):
    fit("token", 3, data, data)
  with pytest.raises(ValueError, match=r"train\[1\]"):
    fit("residue", 3, [data[0], (data[1][0], data[1][1][:-1])], data)
  with pytest.raises(ValueError, match="num_outputs=2"):
    fit("residue", 2, data, data)
  with pytest.raises(ValueError, match="wide"):
    fit("residue", 3, data, [(x[:, :8], y) for x, y in data])
  with pytest.raises(ValueError, match="grad_accumulation"):
    train.TrainConfig(grad_accumulation=0)


def test_confident_contacts_keep_their_order():
  # Logits around 20: float32 sigmoids would all be 1.0 and tie.
  head = convbert.ContactPredictor(HEAD)
  params = convbert.init_params(head, D, jax.random.PRNGKey(0))
  bias = np.array([0.0, 20.0], np.float32)
  params = dict(params, decoder=dict(params["decoder"], bias=bias))
  x = np.random.default_rng(0).normal(size=(20, D)).astype(np.float32)
  (probabilities,) = train.predict("contact", params, [x], HEAD)
  logits = np.asarray(
      head.apply({"params": params}, x[None], np.ones((1, 20), bool))
  )[0]
  assert logits.min() > 17 and (probabilities < 1).all()
  i, j = np.triu_indices(20, k=6)
  assert (
      np.argsort(-probabilities[i, j], kind="stable")
      == np.argsort(-logits[i, j], kind="stable")
  ).all()


def test_progress_in_a_log_is_whole_lines(capsys):
  # capsys's stderr is not a terminal, as a redirected log is not.
  train.fit(
      "residue",
      3,
      _residue_data(0, 48),
      _residue_data(1, 16),
      metric_fn=_accuracy,
      train_config=train.TrainConfig(epochs=2, warmup_steps=1),
      progress=True,
  )
  captured = capsys.readouterr()
  assert "\r" not in captured.err
  assert "epoch 2/2: train loss" in captured.out
