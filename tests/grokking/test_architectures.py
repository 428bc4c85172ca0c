"""Tests for slt_jax.grokking.architectures: forward passes against NumPy,
parameter counts against closed forms, PyTorch-style initialisation, the
layer and head masks, and the task's loss and metrics."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import special

from slt_jax.grokking import architectures as A
from slt_jax.grokking import data as D
from slt_jax.grokking import losses
from slt_jax.llc import mask_from_paths, param_paths, split_nnx

# Eager module construction compiles many small programs: see
# conftest.cheap_compiles.
pytestmark = pytest.mark.usefixtures("cheap_compiles")

P = 7
PAIRS = np.array([[0, 0], [1, 2], [6, 5], [3, 3], [4, 1]], np.int32)


def _arrays(params) -> dict:
  """One network's parameters as NumPy arrays by readable path."""
  leaves = jax.tree.leaves(params)
  return {
    path: np.asarray(x, np.float64)
    for path, x in zip(param_paths(params), leaves)
  }


def _gelu(x):
  return 0.5 * x * (1.0 + special.erf(x / np.sqrt(2.0)))


def _layer_norm(x, scale, bias):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + 1e-5) * scale + bias


def _attention(x_BxTxd, w: dict, prefix: str, heads: int):
  """Multi-head self-attention written out head by head."""
  d = x_BxTxd.shape[-1]
  hd = d // heads
  out = np.zeros_like(x_BxTxd)
  for h in range(heads):
    q, k, v = (
      x_BxTxd @ w[f"{prefix}/{n}/kernel"][:, h] + w[f"{prefix}/{n}/bias"][h]
      for n in ("query", "key", "value")
    )
    logits = q @ np.swapaxes(k, 1, 2) / np.sqrt(hd)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out += (weights @ v) @ w[f"{prefix}/out/kernel"][h]
  return out + w[f"{prefix}/out/bias"]


def _numpy_forward(cfg, w: dict, pairs):
  """The three networks' outputs from their definitions, in float64."""
  if cfg.kind == "relu_net":
    x = np.concatenate(
      [np.eye(cfg.p)[pairs[:, 0]], np.eye(cfg.p)[pairs[:, 1]]], 1
    )
    return np.maximum(x @ w["W/kernel"], 0.0) @ w["V/kernel"]
  e = w["embed/embedding"][pairs]
  if cfg.kind == "embed_mlp":
    h = (e[:, 0] @ w["left/kernel"] + w["left/bias"]) + (
      e[:, 1] @ w["right/kernel"] + w["right/bias"]
    )
    return _gelu(h) @ w["out/kernel"]
  x = e
  for i in range(cfg.num_layers):
    pre = f"layers/{i}"
    x = _layer_norm(
      x + _attention(x, w, f"{pre}/attention", cfg.num_heads),
      w[f"{pre}/norm1/scale"],
      w[f"{pre}/norm1/bias"],
    )
    ff = _gelu(x @ w[f"{pre}/ff_in/kernel"] + w[f"{pre}/ff_in/bias"])
    ff = ff @ w[f"{pre}/ff_out/kernel"] + w[f"{pre}/ff_out/bias"]
    x = _layer_norm(x + ff, w[f"{pre}/norm2/scale"], w[f"{pre}/norm2/bias"])
  return x.mean(1) @ w["out/kernel"]


CONFIGS = [
  A.ReLUNetConfig(p=P, width=16),
  A.EmbedMLPConfig(p=P, embed_dim=4, hidden_dim=6),
  A.TransformerConfig(
    p=P, d_model=4, num_layers=2, num_heads=1, feedforward_dim=8
  ),
  A.TransformerConfig(
    p=P, d_model=6, num_layers=1, num_heads=2, feedforward_dim=5
  ),
]


def _perturbed(params, key):
  """Random normal parameters (LayerNorm scales and biases off their
  1 / 0 initialisation, so the check sees every parameter)."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  noise = [0.5 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]
  return jax.tree.unflatten(treedef, [x + n for x, n in zip(leaves, noise)])


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.kind)
def test_forward_matches_numpy(cfg):
  params, apply = split_nnx(cfg.build(nnx.Rngs(0)))
  params = _perturbed(params, jax.random.key(1))
  out = apply(params, jnp.asarray(PAIRS))
  chex.assert_shape(out, (len(PAIRS), P))
  chex.assert_tree_all_finite(out)
  expected = _numpy_forward(cfg, _arrays(params), PAIRS)
  np.testing.assert_allclose(np.asarray(out), expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize(
  "cfg, expected",
  [
    (A.ReLUNetConfig(p=53, width=1024), 3 * 53 * 1024),
    (A.EmbedMLPConfig(p=53), 53 * 12 + 2 * (12 * 48 + 48) + 48 * 53),
    # embed + out; per layer: q, k, v, out (d^2 + d each), 2 LayerNorms
    # (2d each), feed-forward (d F + F + F d + d).
    (
      A.TransformerConfig(p=53),
      2 * 53 * 12 + 2 * (4 * (144 + 12) + 4 * 12 + (2 * 12 * 256 + 256 + 12)),
    ),
    (A.TransformerConfig(p=5, d_model=6, num_layers=3, num_heads=3), None),
  ],
  ids=["relu", "mlp", "transformer", "transformer_3x3"],
)
def test_parameter_counts_match_closed_forms(cfg, expected):
  params, _ = split_nnx(cfg.build(nnx.Rngs(0)))
  assert A.num_params(params) == cfg.num_params()
  if expected is not None:
    assert cfg.num_params() == expected


def test_initialisation_follows_pytorch():
  # nn.Linear: U(+-1/sqrt(fan_in)) weights and biases; nn.Embedding N(0, 1);
  # attention q/k/v U(+-sqrt(1.5/d)), zero biases.
  params, _ = split_nnx(
    A.EmbedMLPConfig(p=53, hidden_dim=400).build(nnx.Rngs(0))
  )
  w = _arrays(params)
  for path, fan_in in (
    ("left/kernel", 12),
    ("left/bias", 12),
    ("out/kernel", 400),
  ):
    bound = 1 / np.sqrt(fan_in)
    assert np.abs(w[path]).max() <= bound
    # Uniform: the mean |x| is half the bound (to sampling error).
    np.testing.assert_allclose(np.abs(w[path]).mean(), bound / 2, rtol=0.15)
  np.testing.assert_allclose(w["embed/embedding"].std(), 1.0, rtol=0.1)
  cfg = A.TransformerConfig(p=53, d_model=64, num_layers=1)
  w = _arrays(split_nnx(cfg.build(nnx.Rngs(0)))[0])
  query = w["layers/0/attention/query/kernel"]
  assert np.abs(query).max() <= np.sqrt(1.5 / 64)
  np.testing.assert_allclose(
    np.abs(query).mean(), np.sqrt(1.5 / 64) / 2, rtol=0.05
  )
  assert not w["layers/0/attention/query/bias"].any()
  assert not w["layers/0/attention/out/bias"].any()
  np.testing.assert_array_equal(w["layers/0/norm1/scale"], 1.0)


def _selected(params, patterns) -> set:
  """Paths whose mask is all ones (the rest must be all zeros)."""
  mask = _arrays(mask_from_paths(params, patterns))
  assert all(np.all(m == 0) or np.all(m == 1) for m in mask.values())
  return {path for path, m in mask.items() if np.all(m == 1)}


@pytest.mark.parametrize(
  "cfg, expected",
  [
    (
      A.ReLUNetConfig(p=P, width=4),
      {"W (input)": {"W/kernel"}, "V (output)": {"V/kernel"}},
    ),
    (
      A.EmbedMLPConfig(p=P, embed_dim=2, hidden_dim=3),
      {
        "embedding": {"embed/embedding"},
        "input projections": {
          "left/kernel",
          "left/bias",
          "right/kernel",
          "right/bias",
        },
        "output": {"out/kernel"},
      },
    ),
  ],
  ids=["relu", "mlp"],
)
def test_layer_patterns_select_their_layer(cfg, expected):
  params, _ = split_nnx(cfg.build(nnx.Rngs(0)))
  patterns = cfg.layer_patterns()
  assert list(patterns) == list(expected)
  for name, paths in expected.items():
    assert _selected(params, patterns[name]) == paths
  # The layers partition the parameters.
  sizes = [
    sum(np.size(_arrays(params)[p]) for p in paths)
    for paths in expected.values()
  ]
  assert sum(sizes) == cfg.num_params()


def test_transformer_layer_patterns_partition_the_parameters():
  cfg = A.TransformerConfig(p=P, d_model=4, num_layers=2, feedforward_dim=8)
  params, _ = split_nnx(cfg.build(nnx.Rngs(0)))
  paths = set(param_paths(params))
  picked = {
    name: _selected(params, pattern)
    for name, pattern in cfg.layer_patterns().items()
  }
  assert list(picked) == ["embedding", "layer 0", "layer 1", "output"]
  assert picked["layer 1"] == {p for p in paths if p.startswith("layers/1/")}
  assert len(picked["layer 0"]) == 16  # q, k, v, out, 2 norms, 2 ff: 2 each
  assert set().union(*picked.values()) == paths
  assert sum(len(v) for v in picked.values()) == len(paths)


def test_head_mask_selects_one_heads_slices():
  cfg = A.TransformerConfig(
    p=P, d_model=6, num_layers=2, num_heads=3, feedforward_dim=4
  )
  params, _ = split_nnx(cfg.build(nnx.Rngs(0)))
  shapes = {path: x.shape for path, x in _arrays(params).items()}
  mask = {
    path: np.broadcast_to(m, shapes[path])
    for path, m in _arrays(A.head_mask(params, layer=1, head=2)).items()
  }
  # By hand: head 2's slices of the q, k, v kernels (d, heads, 2) and biases
  # (heads, 2) and of the output kernel (heads, 2, d); nothing else.
  hand = {path: np.zeros(shape) for path, shape in shapes.items()}
  for name in ("query", "key", "value"):
    hand[f"layers/1/attention/{name}/kernel"][:, 2] = 1.0
    hand[f"layers/1/attention/{name}/bias"][2] = 1.0
  hand["layers/1/attention/out/kernel"][2] = 1.0
  for path in shapes:
    np.testing.assert_array_equal(mask[path], hand[path], err_msg=path)
  moving = sum(m.sum() for m in mask.values())
  assert moving == 3 * (6 * 2 + 2) + 2 * 6


def test_head_mask_stacks_over_points():
  cfg = A.TransformerConfig(
    p=P, d_model=4, num_layers=1, num_heads=2, feedforward_dim=4
  )
  task = A.ArchitectureTask(cfg)
  stacked = jax.vmap(jax.vmap(task.init))(
    jax.random.split(jax.random.key(0), 6).reshape(2, 3)
  )
  one = jax.tree.map(lambda x: x[0, 0], stacked)
  chex.assert_trees_all_equal(
    A.head_mask(stacked, 0, 1, batch_ndim=2), A.head_mask(one, 0, 1)
  )


def test_task_loss_and_metrics():
  cfg = A.EmbedMLPConfig(p=P, embed_dim=3, hidden_dim=5)
  d = D.modular_addition(P, 0.5, key=jax.random.key(0))
  for loss_name in ("cross_entropy", "centered_mse"):
    task = A.ArchitectureTask(cfg, loss_name)
    params = task.init(jax.random.key(1))
    out = A.apply_fn(cfg)(params, d.all.pairs)
    np.testing.assert_allclose(
      task.loss(params, d.train),
      losses.loss_from_outputs(
        loss_name, out[: d.num_train], d.train.labels, d.train.weights
      ),
      rtol=1e-6,
    )
    train_loss, val_loss, train_acc, val_acc = task.metrics(
      params, d.all, d.num_train
    )
    np.testing.assert_allclose(
      train_loss, task.loss(params, d.train), rtol=1e-5
    )
    np.testing.assert_allclose(val_loss, task.loss(params, d.val), rtol=1e-5)
    hits = np.argmax(out, 1) == d.all.labels
    np.testing.assert_allclose(train_acc, hits[: d.num_train].mean(), rtol=1e-6)
    np.testing.assert_allclose(val_acc, hits[d.num_train :].mean(), rtol=1e-6)
  assert A.ArchitectureTask(cfg) == A.ArchitectureTask(cfg, "cross_entropy")
  assert hash(A.ArchitectureTask(cfg)) == hash(A.ArchitectureTask(cfg))


@pytest.mark.parametrize(
  "make, match",
  [
    (lambda: A.ReLUNetConfig(width=0), "width=0 is invalid"),
    (lambda: A.ReLUNetConfig(p=1), "p=1 is invalid"),
    (lambda: A.EmbedMLPConfig(hidden_dim=2.5), "hidden_dim=2.5 is invalid"),
    (
      lambda: A.TransformerConfig(d_model=10, num_heads=4),
      "d_model=10 is invalid: must be a multiple of num_heads=4",
    ),
    (
      lambda: A.ArchitectureTask(A.EmbedMLPConfig(), "hinge"),
      "loss_name='hinge' is invalid",
    ),
    (lambda: A.ArchitectureTask("mlp"), "arch='mlp' is invalid"),
    (
      lambda: A.head_mask(
        split_nnx(A.TransformerConfig(p=P).build(nnx.Rngs(0)))[0], 0, 1
      ),
      "head=1 is invalid: must be in [0, 1)",
    ),
    (
      lambda: A.head_mask(
        split_nnx(A.TransformerConfig(p=P).build(nnx.Rngs(0)))[0], 2, 0
      ),
      "layer=2 is invalid: must be in [0, 2)",
    ),
  ],
)
def test_bad_arguments_raise(make, match):
  with pytest.raises(ValueError, match=re.escape(match)):
    make()
