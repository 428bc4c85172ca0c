"""Tests for slt_jax.training: Flax models through the generic trainer
(seeds × lrs, early stopping, resumption) and a least-squares optimum."""

import os
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from slt_jax.llc.flax_models import split_nnx
from slt_jax.training import LoopConfig, Task, remove_saved_state, train_models
from slt_jax.training.resume import CHUNKS_DIR, STATE_FILE

P, NUM_TRAIN = 7, 35
METRICS = ("train_loss", "val_loss", "train_acc", "val_acc")
# Seeds × lrs stop on memorising the training pairs (one check at 1.0).
MODULAR_CFG = LoopConfig(
  lr=3e-2,
  weight_decay=0.0,
  batch_size=16,
  num_steps=400,
  log_every=20,
  ckpt_every=100,
  chunk_steps=200,
  stop_metric="train_acc",
  stop_at=1.0,
  stop_patience=1,
)
MODULAR_GRID = {"seeds": 2, "lrs": [1e-2, 3e-2]}
SPEC = {"model": "AdditionMLP(p=7, embed=8, hidden=32)"}


class AdditionMLP(nnx.Module):
  """Embeds both summands, concatenates, one ReLU layer, logits over Z_p."""

  def __init__(self, rngs: nnx.Rngs):
    self.embed = nnx.Embed(P, 8, rngs=rngs)
    self.hidden = nnx.Linear(16, 32, rngs=rngs)
    self.out = nnx.Linear(32, P, rngs=rngs)

  def __call__(self, pairs):
    x = self.embed(pairs).reshape(pairs.shape[0], -1)
    return self.out(jax.nn.relu(self.hidden(x)))


def _init_mlp(key):
  return split_nnx(AdditionMLP(nnx.Rngs(key)))[0]


_, APPLY_MLP = split_nnx(AdditionMLP(nnx.Rngs(0)))


def _mlp_loss(params, batch):
  logits = APPLY_MLP(params, batch["pairs"])
  return jnp.mean(
    -jnp.take_along_axis(
      jax.nn.log_softmax(logits), batch["labels"][:, None], axis=1
    )
  )


def _mlp_metrics(params, data, num_train):
  """Cross-entropy and accuracy on the train prefix and the rest."""
  logits = APPLY_MLP(params, data["pairs"])
  nll = -jnp.take_along_axis(
    jax.nn.log_softmax(logits), data["labels"][:, None], axis=1
  )[:, 0]
  correct = (jnp.argmax(logits, axis=1) == data["labels"]).astype(jnp.float32)
  in_train = jnp.arange(nll.shape[0]) < num_train
  values = []
  for x in (nll, correct):
    for mask in (in_train, ~in_train):
      values.append(jnp.sum(jnp.where(mask, x, 0.0)) / jnp.sum(mask))
  return jnp.stack([values[0], values[1], values[2], values[3]])


MLP_TASK = Task(_init_mlp, _mlp_loss, _mlp_metrics, METRICS)


@pytest.fixture(scope="module")
def modular_data() -> dict:
  """All p^2 pairs (a, b) -> (a + b) mod p, shuffled."""
  a, b = np.divmod(np.arange(P * P), P)
  order = np.random.default_rng(0).permutation(P * P)
  pairs = np.stack([a, b], axis=1)[order].astype(np.int32)
  return {"pairs": pairs, "labels": (pairs[:, 0] + pairs[:, 1]) % P}


@pytest.fixture(scope="module")
def modular_grid(modular_data):
  """The uninterrupted seeds × lrs run of the MLP."""
  return train_models(
    jax.random.key(0),
    MLP_TASK,
    modular_data,
    MODULAR_CFG,
    num_train=NUM_TRAIN,
    progress=False,
    **MODULAR_GRID,
  )


def test_flax_grid_memorises_and_stops(modular_grid):
  r = modular_grid
  np.testing.assert_array_equal(r.hparams["seed"], [0, 0, 1, 1])
  np.testing.assert_array_equal(r.hparams["lr"], [1e-2, 3e-2] * 2)
  assert set(r.metrics) == set(METRICS)
  # Step 0: chance level (1/p) on the training pairs, loss near log p.
  assert np.all(r.metrics["train_acc"][:, 0] < 0.5)
  np.testing.assert_allclose(r.metrics["train_loss"][:, 0], np.log(P), rtol=0.2)
  # Every run memorised its training pairs, and the rule fired at the first
  # logged step with train_acc >= 1.
  assert np.all(r.stop_step > 0)
  for run, step in enumerate(r.stop_step):
    curve = r.metrics["train_acc"][run]
    at = int(np.flatnonzero(r.log_steps == step)[0])
    assert curve[at] == 1.0 and np.all(curve[:at] < 1.0)
    np.testing.assert_array_equal(curve[at:], curve[at])  # Frozen after.
    for leaf, final in zip(
      jax.tree.leaves(r.checkpoints), jax.tree.leaves(r.final_params)
    ):
      for c in np.flatnonzero(r.ckpt_steps >= step):
        np.testing.assert_array_equal(leaf[run, c], final[run])
  # The grid points of one seed start equal and end apart.
  np.testing.assert_array_equal(
    r.metrics["val_loss"][0, 0], r.metrics["val_loss"][1, 0]
  )
  kernel = r.final_params["out"]["kernel"][...]
  chex.assert_shape(kernel, (4, 32, P))
  assert not np.allclose(kernel[0], kernel[1])


def test_flax_resume_matches_uninterrupted(
  modular_data, modular_grid, tmp_path
):
  out_dir = str(tmp_path / "run")
  kwargs = dict(num_train=NUM_TRAIN, out_dir=out_dir, spec=SPEC, progress=False)
  first = train_models(
    jax.random.key(0),
    MLP_TASK,
    modular_data,
    MODULAR_CFG,
    max_chunks=1,
    **kwargs,
    **MODULAR_GRID,
  )
  assert first.log_steps[-1] == MODULAR_CFG.chunk_steps
  assert os.path.exists(os.path.join(out_dir, STATE_FILE))
  rest = train_models(
    jax.random.key(0),
    MLP_TASK,
    modular_data,
    MODULAR_CFG,
    **kwargs,
    **MODULAR_GRID,
  )
  for name in ("ckpt_steps", "log_steps", "stop_step"):
    np.testing.assert_array_equal(
      getattr(rest, name), getattr(modular_grid, name)
    )
  chex.assert_trees_all_equal(rest.checkpoints, modular_grid.checkpoints)
  chex.assert_trees_all_equal(rest.final_params, modular_grid.final_params)
  chex.assert_trees_all_equal(rest.metrics, modular_grid.metrics)
  # Another model's spec is another setup: its state is refused.
  with pytest.raises(
    ValueError,
    match=re.escape(repr(out_dir)) + " holds the training state of another",
  ):
    train_models(
      jax.random.key(0),
      MLP_TASK,
      modular_data,
      MODULAR_CFG,
      **{**kwargs, "spec": {"model": "other"}},
      **MODULAR_GRID,
    )
  remove_saved_state(out_dir)
  assert not os.path.exists(os.path.join(out_dir, CHUNKS_DIR))


def test_linear_model_reaches_least_squares_optimum():
  # y = x w* + b* + noise; full-batch SGD on nnx.Linear reaches the
  # least-squares fit of the training rows, computed in closed form.
  rng = np.random.default_rng(1)
  x = rng.normal(size=(40, 3)).astype(np.float32)
  y = (x @ np.array([1.5, -2.0, 0.5]) + 0.3 + 0.1 * rng.normal(size=40)).astype(
    np.float32
  )
  num_train = 32
  design = np.concatenate([x, np.ones((40, 1))], axis=1)[:num_train]
  coef, residual, *_ = np.linalg.lstsq(design, y[:num_train], rcond=None)
  best_loss = float(residual[0]) / num_train

  _, apply = split_nnx(nnx.Linear(3, 1, rngs=nnx.Rngs(0)))

  def mse(params, data):
    return jnp.mean((apply(params, data["x"])[:, 0] - data["y"]) ** 2)

  def metrics(params, data, n):
    err = (apply(params, data["x"])[:, 0] - data["y"]) ** 2
    in_train = jnp.arange(err.shape[0]) < n
    return jnp.sum(jnp.where(in_train, err, 0.0))[None] / n

  task = Task(
    lambda key: split_nnx(nnx.Linear(3, 1, rngs=nnx.Rngs(key)))[0],
    mse,
    metrics,
    ("train_loss",),
  )
  cfg = LoopConfig(
    optimizer="sgd",
    momentum=0.0,
    lr=0.1,
    weight_decay=0.0,
    batch_size=num_train,
    num_steps=400,
    log_every=10,
    ckpt_every=100,
    chunk_steps=400,
    stop_metric="train_loss",
    stop_at=best_loss * (1 + 1e-4),
    stop_below=True,
  )
  r = train_models(
    jax.random.key(2),
    task,
    {"x": x, "y": y},
    cfg,
    num_train=num_train,
    seeds=2,
    progress=False,
  )
  fitted = np.concatenate(
    [r.final_params["kernel"][...][:, :, 0], r.final_params["bias"][...]],
    axis=1,
  )
  np.testing.assert_allclose(fitted, np.stack([coef] * 2), atol=1e-3)
  # The rule fired (three checks within 1e-4 of the optimum), never below it.
  assert np.all(r.stop_step > 0)
  assert np.all(r.metrics["train_loss"] >= best_loss * (1 - 1e-5))
  assert np.all(r.metrics["train_loss"][:, -1] <= cfg.stop_at)


@pytest.mark.parametrize(
  "change, match",
  [
    ({"cfg": LoopConfig(stop_metric="acc", stop_at=0.5)}, "stop_metric='acc'"),
    ({"out_dir": "unused"}, "spec=None is invalid"),
    ({"out_dir": "unused", "spec": {"key": 1}}, "spec={'key': 1} is invalid"),
    ({"data": {"x": np.zeros((4, 2)), "y": np.zeros(5)}}, "data="),
    ({"max_chunks": -1}, "max_chunks=-1"),
    ({"num_train": 4}, "num_train=4 is invalid"),
    ({"lrs": [0.0]}, "lr=0.0 is invalid"),
  ],
)
def test_bad_arguments_raise(change, match):
  task = Task(
    lambda key: jnp.zeros(2),
    lambda w, d: jnp.sum(w),
    lambda w, d, n: jnp.sum(w)[None],
    ("loss",),
  )
  args = {
    "cfg": LoopConfig(
      batch_size=2, num_steps=10, log_every=5, ckpt_every=5, chunk_steps=10
    ),
    "data": {"x": np.zeros((4, 2)), "y": np.zeros(4)},
    "num_train": 3,
    **change,
  }
  with pytest.raises(ValueError, match=re.escape(match)):
    train_models(
      jax.random.key(0),
      task,
      args.pop("data"),
      args.pop("cfg"),
      progress=False,
      **args,
    )


def test_bad_cfg_type_raises():
  with pytest.raises(TypeError, match="cfg=.* must be a LoopConfig"):
    train_models(
      jax.random.key(0),
      Task(None, None, None, ("loss",)),
      {"x": np.zeros(4)},
      {"lr": 0.1},
      num_train=2,
    )


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"stop_at": 0.5}, "stop_at=0.5 is invalid: must be None without"),
    ({"optimizer": "lbfgs"}, "optimizer='lbfgs'"),
    ({"ckpt_every": 25, "log_every": 10, "chunk_steps": 100}, "ckpt_every=25"),
    (
      {
        "num_steps": 20,
        "log_every": 10,
        "ckpt_every": 10,
        "chunk_steps": 20,
        "stop_metric": "loss",
        "stop_at": 0.1,
        "stop_patience": 3,
      },
      "stop_patience=3 is invalid: exceeds the 2 checks of num_steps=20",
    ),
  ],
)
def test_bad_loop_config_raises(kwargs, match):
  with pytest.raises(ValueError, match=re.escape(match)):
    LoopConfig(**kwargs)
