"""Tests for slt_jax.grokking.train: learning, shapes, compilation, seeds, resumption,
early stopping."""

import dataclasses
import logging
import math
import os
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax.grokking import data, losses, model, train
from slt_jax.grokking.config import DataConfig, ModelConfig, TrainConfig
from slt_jax.training import loop

P, K = 7, 32
MODEL_CFG = ModelConfig(p=P, width=K)
# Shared by most tests so that the compiled chunk is reused between them.
CFG = TrainConfig(
  lr=1e-2,
  batch_size=8,
  num_steps=300,
  log_every=10,
  ckpt_every=50,
  chunk_steps=100,
)
# Early stopping: at p=11 with 100 training pairs, seed 1 reaches val acc 0.4
# twice in a row at step 140 with lr 1e-2 and at step 260 with lr 3e-3.
STOP_P, STOP_K = 11, 64
STOP_MODEL_CFG = ModelConfig(p=STOP_P, width=STOP_K)
STOP_CFG = TrainConfig(
  lr=3e-3,
  batch_size=16,
  num_steps=600,
  log_every=20,
  ckpt_every=100,
  chunk_steps=200,
  stop_acc=0.4,
  stop_patience=2,
)
STOP_GRID = {"seed_ids": [1], "lrs": [1e-2, 3e-3]}
# 20 steps, logged (and checked) at 10 and 20.
SHORT = {"num_steps": 20, "log_every": 10, "ckpt_every": 10, "chunk_steps": 20}


@pytest.fixture(scope="module")
def tiny_data() -> data.ModularData:
  return data.modular_arithmetic(
    jax.random.key(10), DataConfig(p=P, num_train=30)
  )


@pytest.fixture(scope="module")
def stop_data() -> data.ModularData:
  return data.modular_arithmetic(
    jax.random.key(10), DataConfig(p=STOP_P, num_train=100)
  )


@pytest.fixture(scope="module")
def stop_grid(stop_data) -> train.TrainResult:
  """The 2-run early-stopping grid (stops at steps 140 and 260)."""
  return train.train(
    jax.random.key(0),
    stop_data,
    STOP_MODEL_CFG,
    STOP_CFG,
    progress=False,
    **STOP_GRID,
  )


def _assert_results_equal(a: train.TrainResult, b: train.TrainResult, **tol):
  """Equality (default exact) of everything but the timing."""
  assert_fn = (
    chex.assert_trees_all_close if tol else chex.assert_trees_all_equal
  )
  np.testing.assert_array_equal(a.ckpt_steps, b.ckpt_steps)
  np.testing.assert_array_equal(a.log_steps, b.log_steps)
  np.testing.assert_array_equal(a.stop_step, b.stop_step)
  assert_fn(a.checkpoints, b.checkpoints, **tol)
  assert_fn(a.final_params, b.final_params, **tol)
  assert_fn(a.metrics, b.metrics, **tol)


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_one_step_lowers_loss(key, tiny_data):
  params = model.init(key, MODEL_CFG)
  loss_fn = losses.make_loss("centered_mse")
  optimizer = train.make_optimizer("adam", 1e-2, 1e-5)
  batch = tiny_data.train
  loss0, grads = jax.value_and_grad(loss_fn)(params, batch)
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  loss1 = loss_fn(jax.tree.map(lambda p, u: p + u, params, updates), batch)
  assert loss1 < loss0


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_make_optimizer_steps_downhill(key, name):
  params = {"w": jnp.ones(3)}
  opt = train.make_optimizer(name, 0.1, 0.0)
  grads = {"w": jnp.ones(3)}
  updates, _ = opt.update(grads, opt.init(params), params)
  assert np.all(np.asarray(updates["w"]) < 0)


def test_make_optimizer_bad_name_raises():
  with pytest.raises(ValueError, match="optimizer='rmsprop'"):
    train.make_optimizer("rmsprop", 1e-3, 0.0)


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_train_memorises_and_shapes(key, tiny_data):
  seeds, p = 2, P
  result = train.train(
    key, tiny_data, MODEL_CFG, CFG, seeds=seeds, progress=False
  )
  num_logged = CFG.num_steps // CFG.log_every + 1
  num_ckpts = CFG.num_steps // CFG.ckpt_every
  chex.assert_shape(result.checkpoints["W"], (seeds, num_ckpts, K, 2 * p))
  chex.assert_shape(result.checkpoints["V"], (seeds, num_ckpts, p, K))
  chex.assert_shape(result.final_params["W"], (seeds, K, 2 * p))
  chex.assert_shape(result.final_params["V"], (seeds, p, K))
  np.testing.assert_array_equal(result.ckpt_steps, 50 * np.arange(1, 7))
  np.testing.assert_array_equal(result.log_steps, 10 * np.arange(num_logged))
  assert set(result.metrics) == set(train.METRIC_NAMES)
  for name in train.METRIC_NAMES:
    chex.assert_shape(result.metrics[name], (seeds, num_logged))
    chex.assert_tree_all_finite(result.metrics[name])
  for name in ("seed", "lr", "weight_decay", "num_train"):
    chex.assert_shape(result.hparams[name], (seeds,))
  np.testing.assert_array_equal(result.hparams["seed"], [0, 1])
  np.testing.assert_array_equal(result.hparams["num_train"], [30, 30])
  # The last checkpoint is the final state; learning happened.
  chex.assert_trees_all_equal(
    jax.tree.map(lambda x: x[:, -1], result.checkpoints), result.final_params
  )
  train_loss = result.metrics["train_loss"]
  assert np.all(train_loss[:, -1] < 0.1 * train_loss[:, 0])
  np.testing.assert_array_equal(result.metrics["train_acc"][:, -1], 1.0)
  assert np.isfinite(result.steps_per_second) and result.steps_per_second > 0


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_step0_metrics_match_evaluate(key, tiny_data):
  result = train.train(key, tiny_data, MODEL_CFG, CFG, progress=False)
  params0 = model.init(
    jax.random.split(jax.random.fold_in(key, 0))[0], MODEL_CFG
  )
  expected = train.evaluate(
    params0, tiny_data.all, tiny_data.num_train, CFG.loss
  )
  got = [result.metrics[name][0, 0] for name in train.METRIC_NAMES]
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  np.testing.assert_allclose(
    got[0], losses.make_loss(CFG.loss)(params0, tiny_data.train), rtol=1e-5
  )
  np.testing.assert_allclose(
    got[3], losses.accuracy(params0, tiny_data.val), rtol=1e-5
  )


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_grid_compiles_chunk_once(key, tiny_data, monkeypatch, caplog):
  # A config no other test uses, so the jit cache starts cold for it.
  cfg = TrainConfig(
    lr=1e-2,
    batch_size=8,
    num_steps=60,
    log_every=10,
    ckpt_every=20,
    chunk_steps=20,
  )
  traces = []
  inner = loop._run_chunk

  def counting_run_chunk(*args):
    traces.append(1)
    return inner(*args)

  def chunk_compiles():  # What jax.log_compiles reports, one per compile.
    return sum(
      "Compiling jit(_run_chunk_batched)" in record.getMessage()
      for record in caplog.records
    )

  monkeypatch.setattr(loop, "_run_chunk", counting_run_chunk)
  grid = {
    "lrs": [1e-3, 1e-2],
    "weight_decays": [0.0, 1e-4],
    "num_trains": [8, 30],
  }
  with jax.log_compiles(True), caplog.at_level(logging.WARNING):
    result = train.train(
      key, tiny_data, MODEL_CFG, cfg, seeds=2, progress=False, **grid
    )
    assert len(traces) == 1, len(traces)  # 3 chunks, 16 runs, one trace.
    assert chunk_compiles() == 1
    # Other values of the same grid size reuse the compiled chunk, though
    # each call builds its programs anew.
    other = {
      "lrs": [3e-3, 3e-2],
      "weight_decays": [1e-5, 1e-3],
      "num_trains": [10, 20],
    }
    train.train(
      key, tiny_data, MODEL_CFG, cfg, seeds=2, progress=False, **other
    )
  assert len(traces) == 1
  assert chunk_compiles() == 1
  np.testing.assert_array_equal(
    result.hparams["lr"], np.tile(np.repeat([1e-3, 1e-2], 4), 2)
  )
  np.testing.assert_array_equal(
    result.hparams["num_train"], np.tile([8, 30], 8)
  )
  np.testing.assert_array_equal(result.hparams["seed"], np.repeat([0, 1], 8))
  chex.assert_shape(result.metrics["val_acc"], (16, 7))


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_grid_points_differ(key, tiny_data):
  result = train.train(
    key, tiny_data, MODEL_CFG, CFG, lrs=[1e-3, 1e-2], progress=False
  )
  assert not np.allclose(
    result.final_params["W"][0], result.final_params["W"][1]
  )
  # Same seed: same initialisation and step-0 metrics.
  for name in train.METRIC_NAMES:
    assert result.metrics[name][0, 0] == result.metrics[name][1, 0]


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_vmapped_seeds_match_separate_runs(key, tiny_data):
  seeds = 4
  together = train.train(
    key, tiny_data, MODEL_CFG, CFG, seeds=seeds, progress=False
  )
  for s in range(seeds):
    alone = train.train(
      key, tiny_data, MODEL_CFG, CFG, seed_ids=[s], progress=False
    )
    np.testing.assert_array_equal(alone.hparams["seed"], [s])
    picked = together._replace(
      checkpoints=jax.tree.map(lambda x: x[s : s + 1], together.checkpoints),
      final_params=jax.tree.map(lambda x: x[s : s + 1], together.final_params),
      metrics={k: v[s : s + 1] for k, v in together.metrics.items()},
      stop_step=together.stop_step[s : s + 1],
    )
    # vmapped and unbatched XLA kernels may round differently.
    _assert_results_equal(picked, alone, rtol=1e-4, atol=1e-5)


def test_seed_zero_is_default_single_run(key, tiny_data):
  a = train.train(key, tiny_data, MODEL_CFG, CFG, progress=False)
  b = train.train(key, tiny_data, MODEL_CFG, CFG, seed_ids=[0], progress=False)
  _assert_results_equal(a, b)


def test_same_key_identical_other_key_different(key, tiny_data):
  a = train.train(key, tiny_data, MODEL_CFG, CFG, seeds=2, progress=False)
  b = train.train(key, tiny_data, MODEL_CFG, CFG, seeds=2, progress=False)
  _assert_results_equal(a, b)
  c = train.train(
    jax.random.fold_in(key, 7),
    tiny_data,
    MODEL_CFG,
    CFG,
    seeds=2,
    progress=False,
  )
  assert not np.allclose(a.checkpoints["W"], c.checkpoints["W"])


def test_legacy_key_trains_like_typed_key(tiny_data, tmp_path):
  typed = train.train(
    jax.random.key(0), tiny_data, MODEL_CFG, CFG, seeds=2, progress=False
  )
  legacy = train.train(
    jax.random.PRNGKey(0), tiny_data, MODEL_CFG, CFG, seeds=2, progress=False
  )
  _assert_results_equal(legacy, typed)
  # They are one setup: a state saved under one key resumes under the other.
  out_dir = str(tmp_path / "run")
  kwargs = {"seeds": 2, "out_dir": out_dir, "progress": False}
  train.train(
    jax.random.PRNGKey(0), tiny_data, MODEL_CFG, CFG, max_chunks=1, **kwargs
  )
  resumed = train.train(jax.random.key(0), tiny_data, MODEL_CFG, CFG, **kwargs)
  _assert_results_equal(resumed, typed)


@pytest.mark.parametrize("bad_key", [0, np.zeros(3, np.uint32)])
def test_bad_key_raises(tiny_data, bad_key):
  with pytest.raises(ValueError, match="key=.* is invalid"):
    train.train(bad_key, tiny_data, MODEL_CFG, CFG, progress=False)


def test_resume_matches_uninterrupted(key, tiny_data, tmp_path):
  out_dir = str(tmp_path / "run")
  full = train.train(key, tiny_data, MODEL_CFG, CFG, seeds=2, progress=False)
  first = train.train(
    key,
    tiny_data,
    MODEL_CFG,
    CFG,
    seeds=2,
    out_dir=out_dir,
    max_chunks=1,
    progress=False,
  )
  assert os.path.exists(os.path.join(out_dir, "train_state.npz"))
  chex.assert_shape(first.checkpoints["W"], (2, 2, K, 2 * P))
  chex.assert_shape(first.metrics["train_loss"], (2, 11))
  assert np.isnan(first.steps_per_second)  # One chunk: nothing timed.
  second = train.train(
    key,
    tiny_data,
    MODEL_CFG,
    CFG,
    seeds=2,
    out_dir=out_dir,
    max_chunks=1,
    progress=False,
  )
  chex.assert_shape(second.checkpoints["W"], (2, 4, K, 2 * P))
  rest = train.train(
    key, tiny_data, MODEL_CFG, CFG, seeds=2, out_dir=out_dir, progress=False
  )
  _assert_results_equal(rest, full)
  # A finished run is loaded, not retrained.
  again = train.train(
    key,
    tiny_data,
    MODEL_CFG,
    CFG,
    seeds=2,
    out_dir=out_dir,
    max_chunks=0,
    progress=False,
  )
  _assert_results_equal(again, full)


def _files(folder: str) -> dict[str, bytes]:
  """Every file under ``folder`` -> its bytes."""
  return {
    os.path.join(root, name): open(os.path.join(root, name), "rb").read()
    for root, _, names in os.walk(folder)
    for name in names
  }


def test_resume_refuses_state_of_other_setup(key, tiny_data, tmp_path):
  out_dir = str(tmp_path / "run")
  kwargs = {"out_dir": out_dir, "progress": False}
  train.train(key, tiny_data, MODEL_CFG, CFG, max_chunks=1, **kwargs)
  saved = _files(out_dir)
  other_key = jax.random.fold_in(key, 3)
  with pytest.raises(
    ValueError,
    match=re.escape(repr(out_dir)) + " holds the training state "
    "of another setup",
  ):
    train.train(other_key, tiny_data, MODEL_CFG, CFG, **kwargs)
  assert _files(out_dir) == saved  # Nothing overwritten.
  # The chunks alone (the state file deleted) are refused too.
  os.remove(os.path.join(out_dir, train.STATE_FILE))
  chunks = os.path.join(out_dir, train.CHUNKS_DIR)
  with pytest.raises(
    ValueError, match=re.escape(repr(chunks)) + " holds the parts of another"
  ):
    train.train(other_key, tiny_data, MODEL_CFG, CFG, **kwargs)
  assert _files(chunks) == {k: v for k, v in saved.items() if chunks in k}
  # Its own setup still resumes there.
  resumed = train.train(key, tiny_data, MODEL_CFG, CFG, **kwargs)
  fresh = train.train(key, tiny_data, MODEL_CFG, CFG, progress=False)
  _assert_results_equal(resumed, fresh)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"lrs": [1e-3, 0.0]}, "lr=0.0"),
    ({"lrs": [-1e-3]}, "lr=-0.001"),
    ({"weight_decays": [-1.0]}, "weight_decay=-1.0"),
    ({"num_trains": [4]}, "num_train=4"),  # < batch_size = 8.
    ({"num_trains": [49]}, "num_train=49"),  # = p^2: no validation set.
    ({"lrs": []}, "lrs=[] is invalid"),
    ({"weight_decays": []}, "weight_decays=[] is invalid"),
    ({"num_trains": []}, "num_trains=[] is invalid"),
    ({"lrs": [math.nan]}, "lr=nan is invalid"),
    ({"lrs": [1e-3, math.inf]}, "lr=inf is invalid"),
    ({"weight_decays": [math.nan]}, "weight_decay=nan is invalid"),
    ({"weight_decays": [math.inf]}, "weight_decay=inf is invalid"),
    ({"lrs": 1e-3}, "lrs=0.001 is invalid: must be a sequence"),
    ({"num_trains": [30.0]}, "num_train=30.0 is invalid"),
    ({"seeds": 0}, "seeds=0"),
    ({"seeds": 2.5}, "seeds=2.5 is invalid: must be an integer >= 1"),
    ({"seeds": True}, "seeds=True is invalid"),
    ({"seed_ids": [0.5]}, "seed_ids=[0.5] is invalid"),
    ({"seed_ids": []}, "seed_ids"),
    ({"seed_ids": [1, 1]}, "seed_ids"),
    ({"seed_ids": [-1]}, "seed_ids"),
    ({"seeds": 3, "seed_ids": [0, 1]}, "seed_ids"),
    ({"max_chunks": -1}, "max_chunks=-1"),
    ({"max_chunks": 0}, "max_chunks=0 is invalid without a saved state"),
    ({"max_chunks": 1.5}, "max_chunks=1.5 is invalid"),
    ({"num_trains": [7]}, "batch_size=8 exceeds the training set of 7 pairs"),
  ],
)
def test_bad_train_arguments_raise(key, tiny_data, kwargs, match):
  with pytest.raises(ValueError, match=re.escape(match)):
    train.train(key, tiny_data, MODEL_CFG, CFG, progress=False, **kwargs)


def test_train_smaller_than_batch_raises(key):
  small = data.modular_arithmetic(key, DataConfig(p=P, num_train=5))
  with pytest.raises(ValueError, match="num_train=5"):
    train.train(key, small, MODEL_CFG, CFG, progress=False)


def test_model_data_p_mismatch_raises(key, tiny_data):
  with pytest.raises(ValueError, match="p=11"):
    train.train(key, tiny_data, ModelConfig(p=11, width=K), CFG, progress=False)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"num_steps": 250, "chunk_steps": 100, "ckpt_every": 50}, "num_steps=250"),
    ({"ckpt_every": 25, "log_every": 10, "chunk_steps": 100}, "ckpt_every=25"),
    (
      {"chunk_steps": 120, "ckpt_every": 50, "log_every": 10},
      "chunk_steps=120",
    ),
    ({"lr": 0.0}, "lr=0.0"),
    ({"weight_decay": -1e-5}, "weight_decay=-1e-05"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"loss": "l1"}, "loss='l1'"),
    ({"optimizer": "lbfgs"}, "optimizer='lbfgs'"),
    ({"stop_acc": 0.0}, "stop_acc=0.0"),
    ({"stop_acc": 1.5}, "stop_acc=1.5"),
    ({"stop_patience": 0}, "stop_patience=0"),
    (
      {
        "stop_check_every": 15,
        "log_every": 10,
        "ckpt_every": 50,
        "chunk_steps": 100,
      },
      "stop_check_every=15",
    ),
    # Rules that could never fire: no check, or fewer checks than patience.
    (
      {**SHORT, "stop_check_every": 1000},
      "stop_check_every=1000 is invalid: exceeds num_steps=20",
    ),
    (
      {**SHORT, "stop_acc": 0.9, "stop_patience": 3},
      "stop_patience=3 is invalid: exceeds the 2 checks of num_steps=20",
    ),
  ],
)
def test_bad_train_config_raises(kwargs, match):
  with pytest.raises(ValueError, match=re.escape(match)):
    TrainConfig(**kwargs)


def test_stop_patience_may_use_every_check():
  cfg = TrainConfig(**SHORT, stop_acc=0.9, stop_patience=2)
  assert cfg.num_steps // cfg.log_every == cfg.stop_patience


def test_batch_larger_than_train_set_message(key):
  small = data.modular_arithmetic(key, DataConfig(p=P, num_train=24))
  with pytest.raises(
    ValueError, match="batch_size=10000 exceeds the training set of 24 pairs"
  ):
    train.train(
      key,
      small,
      MODEL_CFG,
      TrainConfig(
        batch_size=10_000,
        num_steps=100,
        log_every=10,
        ckpt_every=50,
        chunk_steps=100,
      ),
      progress=False,
    )


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_no_stop_rule_is_unchanged(key, tiny_data):
  # A rule that never fires must not change a bit: the masked update selects
  # the unmasked values. (stop_acc=None traces no rule at all; it was checked
  # bit-identical to the code before early stopping existed.)
  plain = train.train(key, tiny_data, MODEL_CFG, CFG, seeds=2, progress=False)
  never = dataclasses.replace(CFG, stop_acc=1.0, stop_patience=30)  # 30 checks.
  ruled = train.train(key, tiny_data, MODEL_CFG, never, seeds=2, progress=False)
  np.testing.assert_array_equal(plain.stop_step, [-1, -1])
  _assert_results_equal(plain, ruled)
  chex.assert_trees_all_equal(plain.stop_params, plain.final_params)


@pytest.mark.slow
def test_early_stop_grid_matches_separate_runs(stop_data, stop_grid):
  num_runs, p, k = 2, STOP_P, STOP_K
  np.testing.assert_array_equal(stop_grid.stop_step, [140, 260])
  chex.assert_shape(stop_grid.stop_step, (num_runs,))
  chex.assert_shape(stop_grid.stop_params["W"], (num_runs, k, 2 * p))
  chex.assert_shape(stop_grid.stop_params["V"], (num_runs, p, k))
  for r, lr in enumerate(STOP_GRID["lrs"]):
    alone = train.train(
      jax.random.key(0),
      stop_data,
      STOP_MODEL_CFG,
      STOP_CFG,
      seed_ids=[1],
      lrs=[lr],
      progress=False,
    )
    np.testing.assert_array_equal(
      alone.stop_step, stop_grid.stop_step[r : r + 1]
    )
    chex.assert_trees_all_close(
      alone.stop_params,
      jax.tree.map(lambda x: x[r : r + 1], stop_grid.stop_params),
      rtol=1e-4,
      atol=1e-5,
    )
    # The single run ends with its own chunk; the grid's run agrees so far.
    num_logged, num_ckpts = len(alone.log_steps), len(alone.ckpt_steps)
    chex.assert_trees_all_close(
      alone.metrics,
      {k: v[r : r + 1, :num_logged] for k, v in stop_grid.metrics.items()},
      rtol=1e-4,
      atol=1e-5,
    )
    chex.assert_trees_all_close(
      alone.checkpoints,
      jax.tree.map(lambda x: x[r : r + 1, :num_ckpts], stop_grid.checkpoints),
      rtol=1e-4,
      atol=1e-5,
    )


def test_loop_ends_when_all_runs_stopped(stop_grid):
  # The last run stops at step 260, in the second chunk of 200 steps.
  assert stop_grid.log_steps[-1] == 400 < STOP_CFG.num_steps
  np.testing.assert_array_equal(stop_grid.ckpt_steps, [100, 200, 300, 400])
  chex.assert_shape(stop_grid.checkpoints["W"], (2, 4, STOP_K, 2 * STOP_P))
  chex.assert_shape(stop_grid.metrics["val_acc"], (2, 21))
  # After its stop a run is frozen: checkpoints and metrics repeat.
  for r, step in enumerate(stop_grid.stop_step):
    after = stop_grid.ckpt_steps >= step
    for leaf, stopped in zip(
      jax.tree.leaves(stop_grid.checkpoints),
      jax.tree.leaves(stop_grid.stop_params),
    ):
      for c in np.flatnonzero(after):
        np.testing.assert_array_equal(leaf[r, c], stopped[r])
    at = int(np.flatnonzero(stop_grid.log_steps == step)[0])
    for name in train.METRIC_NAMES:
      curve = stop_grid.metrics[name][r]
      np.testing.assert_array_equal(curve[at:], curve[at])
    assert stop_grid.metrics["val_acc"][r, at] >= STOP_CFG.stop_acc
    assert stop_grid.metrics["val_acc"][r, at - 1] >= STOP_CFG.stop_acc
    assert stop_grid.metrics["val_acc"][r, at - 2] < STOP_CFG.stop_acc


@pytest.mark.slow
def test_stop_check_every_spaces_the_checks(stop_data):
  cfg = dataclasses.replace(STOP_CFG, stop_check_every=40)
  result = train.train(
    jax.random.key(0),
    stop_data,
    STOP_MODEL_CFG,
    cfg,
    progress=False,
    **STOP_GRID,
  )
  # Checks at 40, 80, ...: the lr 1e-2 run (>= 0.4 from step 120) stops at
  # 160, not 140.
  np.testing.assert_array_equal(result.stop_step % 40, [0, 0])
  assert result.stop_step[0] == 160


def test_early_stop_resume_matches(stop_data, stop_grid, tmp_path):
  out_dir = str(tmp_path / "run")
  first = train.train(
    jax.random.key(0),
    stop_data,
    STOP_MODEL_CFG,
    STOP_CFG,
    out_dir=out_dir,
    max_chunks=1,
    progress=False,
    **STOP_GRID,
  )
  np.testing.assert_array_equal(first.stop_step, [140, -1])
  rest = train.train(
    jax.random.key(0),
    stop_data,
    STOP_MODEL_CFG,
    STOP_CFG,
    out_dir=out_dir,
    progress=False,
    **STOP_GRID,
  )
  _assert_results_equal(rest, stop_grid)
  # All runs stopped: a further call trains nothing.
  again = train.train(
    jax.random.key(0),
    stop_data,
    STOP_MODEL_CFG,
    STOP_CFG,
    out_dir=out_dir,
    max_chunks=0,
    progress=False,
    **STOP_GRID,
  )
  _assert_results_equal(again, stop_grid)


def test_saved_state_is_one_file_per_chunk(key, tiny_data, tmp_path):
  out_dir = str(tmp_path / "run")
  train.train(key, tiny_data, MODEL_CFG, CFG, out_dir=out_dir, progress=False)
  chunk_dir = os.path.join(out_dir, train.CHUNKS_DIR)
  names = sorted(os.listdir(chunk_dir))
  assert names == [f"chunk_{i:05d}.npz" for i in range(3)] + ["owner.json"]
  names = names[:-1]
  sizes = {os.path.getsize(os.path.join(chunk_dir, n)) for n in names}
  assert len(sizes) == 1  # Constant I/O per chunk, not growing.
  train.remove_saved_state(out_dir)
  assert os.listdir(out_dir) == []


def test_corrupt_saved_state_raises_naming_file(key, tiny_data, tmp_path):
  out_dir = str(tmp_path / "run")
  train.train(
    key,
    tiny_data,
    MODEL_CFG,
    CFG,
    out_dir=out_dir,
    max_chunks=2,
    progress=False,
  )
  chunk = os.path.join(out_dir, train.CHUNKS_DIR, "chunk_00001.npz")
  with open(chunk, "r+b") as f:
    f.truncate(os.path.getsize(chunk) // 2)
  with pytest.raises(ValueError, match="chunk_00001.npz is unreadable"):
    train.train(key, tiny_data, MODEL_CFG, CFG, out_dir=out_dir, progress=False)
  assert os.path.exists(chunk)  # Nothing is deleted.
  os.remove(chunk)
  with pytest.raises(ValueError, match="chunk_00001.npz is missing"):
    train.train(key, tiny_data, MODEL_CFG, CFG, out_dir=out_dir, progress=False)
  state = os.path.join(out_dir, train.STATE_FILE)
  with open(state, "wb") as f:
    f.write(b"not an npz")
  with pytest.raises(ValueError, match="train_state.npz is unreadable"):
    train.train(key, tiny_data, MODEL_CFG, CFG, out_dir=out_dir, progress=False)


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_gather_form_trains_like_one_hot_form(key, tiny_data):
  cfg = dataclasses.replace(CFG, num_steps=100)
  runs = [
    train.train(key, tiny_data, MODEL_CFG, cfg, progress=False, form=form)
    for form in model.FORMS
  ]
  chex.assert_trees_all_close(
    runs[0].checkpoints, runs[1].checkpoints, rtol=1e-4, atol=1e-5
  )
  with pytest.raises(ValueError, match="form='dense' is invalid"):
    train.train(key, tiny_data, MODEL_CFG, cfg, progress=False, form="dense")
