"""Masks by parameter name: against masks written by hand, on any pytree."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from slt_jax.llc import (
  SGLDConfig,
  compile_sweep,
  mask_from_paths,
  param_paths,
  resolve_mask,
  split_nnx,
)
from slt_jax.llc.masks import glob_regex

HEADS, HEAD_DIM, WIDTH = 2, 3, 4


class Layer(nnx.Module):
  """Self-attention and a dense layer, both residual."""

  def __init__(self, rngs: nnx.Rngs):
    self.attention = nnx.MultiHeadAttention(
      num_heads=HEADS,
      in_features=WIDTH,
      qkv_features=HEADS * HEAD_DIM,
      decode=False,
      rngs=rngs,
    )
    self.mlp = nnx.Linear(WIDTH, WIDTH, rngs=rngs)

  def __call__(self, x):
    x = x + self.attention(x)
    return x + jnp.tanh(self.mlp(x))


class Transformer(nnx.Module):
  def __init__(self, rngs: nnx.Rngs):
    self.layers = nnx.List([Layer(rngs), Layer(rngs)])
    self.head = nnx.Linear(WIDTH, 1, rngs=rngs)

  def __call__(self, x):
    for layer in self.layers:
      x = layer(x)
    return self.head(x)


@pytest.fixture(scope="module")
def params():
  return split_nnx(Transformer(nnx.Rngs(0)))[0]


def _dense(mask, params) -> dict:
  """The mask as a nested dict of arrays shaped like ``params``' arrays."""
  full = jax.tree.map(lambda m, p: np.broadcast_to(m, p.shape), mask, params)
  return nnx.to_pure_dict(full)


def _zeros(params) -> dict:
  return nnx.to_pure_dict(
    jax.tree.map(lambda p: np.zeros(p.shape, np.float32), params)
  )


def _assert_same(got: dict, want: dict):
  got_leaves = jax.tree_util.tree_flatten_with_path(got)[0]
  want_leaves = jax.tree_util.tree_flatten_with_path(want)[0]
  assert [p for p, _ in got_leaves] == [p for p, _ in want_leaves]
  for (path, g), (_, w) in zip(got_leaves, want_leaves):
    np.testing.assert_array_equal(g, w, err_msg=jax.tree_util.keystr(path))


def test_paths_of_an_nnx_state_are_module_paths(params):
  paths = param_paths(params)
  assert len(paths) == len(jax.tree.leaves(params)) == 22
  assert paths[:2] == ["head/bias", "head/kernel"]
  assert "layers/1/attention/query/kernel" in paths
  assert not any("value" in p.split("/")[-1] for p in paths)


def test_every_attention_weight(params):
  mask = mask_from_paths(params, "**/attention/**")
  assert jax.tree.structure(mask) == jax.tree.structure(params)
  want = _zeros(params)
  for layer in (0, 1):
    for name in ("query", "key", "value", "out"):
      for kind in ("kernel", "bias"):
        want["layers"][layer]["attention"][name][kind][...] = 1
  _assert_same(_dense(mask, params), want)
  # Whole arrays in or out are scalars (no copy of the parameters).
  assert all(np.shape(m) == () for m in jax.tree.leaves(mask))


def test_one_heads_slice_of_query_key_value(params):
  kernels = "layers/*/attention/[qkv]*/kernel"  # query, key, value
  mask = mask_from_paths(params, {kernels: np.s_[:, 1]})
  want = _zeros(params)
  for layer in (0, 1):
    for name in ("query", "key", "value"):
      # nnx kernels are (in_features, heads, head_dim).
      want["layers"][layer]["attention"][name]["kernel"][:, 1, :] = 1
  _assert_same(_dense(mask, params), want)
  sweep = compile_sweep(
    lambda p, x: jnp.sum(x),
    SGLDConfig(batch_size=None),
    jnp.zeros((4, 1)),
    params,
    mask=mask,
  )
  assert sweep.num_moving_params == 2 * 3 * WIDTH * HEAD_DIM == 72


def test_one_layer_and_a_union(params):
  mask = mask_from_paths(params, ["layers/1/**", "head/kernel"])
  want = _zeros(params)
  for leaf in jax.tree.leaves(want["layers"][1]):
    leaf[...] = 1
  want["head"]["kernel"][...] = 1
  _assert_same(_dense(mask, params), want)


def test_overlapping_patterns_take_the_union():
  params = {"w": np.zeros((2, 3))}
  mask = mask_from_paths(params, {"w": np.s_[0], re.compile("w"): np.s_[:, 2]})
  assert mask["w"].tolist() == [[1, 1, 1], [0, 0, 1]]


def test_a_path_pattern_mask_is_the_engine_mask():
  params = {"W": np.ones((2, 3)), "V": np.ones(4), "layers": [np.ones(2)]}
  by_glob = resolve_mask(["V", "layers/*"], params)
  by_predicate = resolve_mask(lambda path, _: "W" not in path, params)
  assert jax.tree.map(float, by_glob) == jax.tree.map(float, by_predicate)
  assert float(resolve_mask("W", params)["W"]) == 1.0


def test_linen_variables_and_regexes():
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(1)(nn.BatchNorm(use_running_average=True)(nn.Dense(3)(x)))

  variables = Net().init(jax.random.key(0), jnp.ones((1, 2)))
  mask = mask_from_paths(variables, re.compile(r"params/Dense_\d+/kernel"))
  ones = [
    jax.tree_util.keystr(path)
    for path, m in jax.tree_util.tree_flatten_with_path(mask)[0]
    if float(m) == 1.0
  ]
  assert ones == [
    "['params']['Dense_0']['kernel']",
    "['params']['Dense_1']['kernel']",
  ]
  stats = mask_from_paths(variables, "batch_stats/**")
  assert float(stats["batch_stats"]["BatchNorm_0"]["mean"]) == 1.0
  assert float(stats["params"]["BatchNorm_0"]["scale"]) == 0.0


def test_indices_address_one_point_of_stacked_params():
  stacked = {"w": np.zeros((5, 2, 3)), "b": np.zeros((5, 3))}
  mask = mask_from_paths(stacked, {"w": np.s_[1]}, batch_ndim=1)
  assert mask["w"].tolist() == [[0, 0, 0], [1, 1, 1]]
  assert float(mask["b"]) == 0.0


@pytest.mark.parametrize(
  "glob, path, matches",
  [
    ("layers/*/kernel", "layers/0/kernel", True),
    ("layers/*/kernel", "layers/0/mlp/kernel", False),
    ("layers/**/kernel", "layers/0/mlp/kernel", True),
    ("**/kernel", "kernel", True),
    ("**kernel", "mlp/kernel", True),
    ("layers/?/w", "layers/7/w", True),
    ("layers/?/w", "layers/12/w", False),
    ("layers/[!0]/w", "layers/1/w", True),
    ("layers/[!0]/w", "layers/0/w", False),
    ("a.b/w", "aXb/w", False),
    ("layers/1", "layers/10", False),
  ],
)
def test_glob_syntax(glob, path, matches):
  assert bool(glob_regex(glob).fullmatch(path)) is matches


def test_a_pattern_matching_nothing_is_named(params):
  with pytest.raises(ValueError, match=r"pattern '\*\*/attn/\*\*' matches no"):
    mask_from_paths(params, ["head/*", "**/attn/**"])


def test_bad_indices_patterns_and_batch_ndim_are_named():
  params = {"w": np.zeros((2, 3))}
  with pytest.raises(
    ValueError, match=r"patterns\['w'\]: index .* 'w' of shape"
  ):
    mask_from_paths(params, {"w": np.s_[:, 5]})
  for bad in (3, [], {}, {1: ...}, ["w", 2]):
    with pytest.raises(TypeError, match="patterns="):
      mask_from_paths(params, bad)
  for bad in (-1, 3, 1.0):
    with pytest.raises(ValueError, match="batch_ndim="):
      mask_from_paths(params, "w", batch_ndim=bad)
