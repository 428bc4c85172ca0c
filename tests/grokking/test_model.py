"""Tests for slt_jax.grokking.model: shapes, pair vs one-hot inputs, initialisation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax.grokking import data, model
from slt_jax.grokking.config import ModelConfig

P, K, B = 7, 16, 9


def _pairs(key, batch=B, p=P):
  return jax.random.randint(key, (batch, 2), 0, p)


class ModelTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_init_shapes(self):
    cfg = ModelConfig(p=P, width=K)
    params = self.variant(lambda key: model.init(key, cfg))(jax.random.key(0))
    chex.assert_shape(params["W"], (K, 2 * P))
    chex.assert_shape(params["V"], (P, K))
    chex.assert_type(jax.tree.leaves(params), jnp.float32)
    assert model.num_params(params) == K * 2 * P + P * K

  @chex.variants(with_jit=True, without_jit=True)
  def test_apply_shapes(self):
    key_init, key_pairs = jax.random.split(jax.random.key(1))
    params = model.init(key_init, ModelConfig(p=P, width=K))
    out = self.variant(model.apply)(params, _pairs(key_pairs))
    chex.assert_shape(out, (B, P))
    chex.assert_tree_all_finite(out)

  @chex.variants(with_jit=True, without_jit=True)
  def test_apply_one_hot_shapes(self):
    key_init, key_pairs = jax.random.split(jax.random.key(2))
    params = model.init(key_init, ModelConfig(p=P, width=K))
    x = data.one_hot_inputs(_pairs(key_pairs), P)
    out = self.variant(model.apply_one_hot)(params, x)
    chex.assert_shape(out, (B, P))

  @chex.variants(with_jit=True, without_jit=True)
  def test_pairs_match_one_hot_inputs(self):
    key_init, key_pairs = jax.random.split(jax.random.key(3))
    params = model.init(key_init, ModelConfig(p=P, width=K))
    pairs = _pairs(key_pairs, batch=32)
    out = self.variant(model.apply)(params, pairs)
    dense = self.variant(model.apply_one_hot)(
      params, data.one_hot_inputs(pairs, P)
    )
    np.testing.assert_allclose(out, dense, atol=1e-5, rtol=1e-5)


def test_pairs_match_hand_computation(key):
  params = model.init(key, ModelConfig(p=5, width=3))
  w, v = np.asarray(params["W"]), np.asarray(params["V"])
  a, b = 2, 4
  expected = v @ np.square(w[:, a] + w[:, 5 + b])
  out = model.apply(params, jnp.array([[a, b]]))
  np.testing.assert_allclose(out[0], expected, rtol=1e-5, atol=1e-6)


def test_apply_rejects_wrong_shapes(key):
  params = model.init(key, ModelConfig(p=5, width=3))
  with pytest.raises(AssertionError):
    model.apply(params, jnp.array([1, 2]))
  with pytest.raises(AssertionError):
    model.apply_one_hot(params, jnp.ones((2, 7)))


def test_kaiming_uniform_bound(key):
  p, width = 11, 300
  params = model.init(
    key, ModelConfig(p=p, width=width, init="kaiming_uniform")
  )
  w, v = np.asarray(params["W"]), np.asarray(params["V"])
  for x, fan_in in ((w, 2 * p), (v, width)):
    bound = 1.0 / np.sqrt(fan_in)
    assert np.abs(x).max() <= bound
    # U(-b, b) fills its range: max near b, std b / sqrt(3).
    assert np.abs(x).max() > 0.95 * bound
    np.testing.assert_allclose(x.std(), bound / np.sqrt(3), rtol=0.1)


def test_lecun_normal_std(key):
  p, width = 31, 2000
  params = model.init(key, ModelConfig(p=p, width=width, init="lecun_normal"))
  for x, fan_in in ((params["W"], 2 * p), (params["V"], width)):
    x = np.asarray(x)
    # Truncated normal rescaled to variance 1 / fan_in; >= 60k samples each.
    np.testing.assert_allclose(x.std(), 1.0 / np.sqrt(fan_in), rtol=0.05)
    assert abs(x.mean()) < 0.05 / np.sqrt(fan_in)


@pytest.mark.parametrize("init", ["kaiming_uniform", "lecun_normal"])
def test_init_scale_scales(key, init):
  base = model.init(key, ModelConfig(p=5, width=8, init=init))
  scaled = model.init(key, ModelConfig(p=5, width=8, init=init, init_scale=3.0))
  chex.assert_trees_all_close(
    scaled, jax.tree.map(lambda x: 3.0 * x, base), rtol=1e-6
  )


def test_different_keys_differ(key):
  cfg = ModelConfig(p=5, width=8)
  a = model.init(key, cfg)
  b = model.init(jax.random.fold_in(key, 1), cfg)
  assert not np.allclose(a["W"], b["W"])


@pytest.mark.parametrize(
  "kwargs, name",
  [
    ({"p": 51}, "p=51"),
    ({"p": 2}, "p=2"),
    ({"width": 0}, "width=0"),
    ({"init": "xavier"}, "init='xavier'"),
    ({"init_scale": 0.0}, "init_scale=0.0"),
    ({"init_scale": -1.0}, "init_scale=-1.0"),
  ],
)
def test_bad_config_raises(kwargs, name):
  with pytest.raises(ValueError, match=name):
    ModelConfig(**kwargs)


@pytest.mark.parametrize("name", ["centered_mse", "mse", "cross_entropy"])
def test_gather_form_equals_one_hot_form(key, name):
  from slt_jax.grokking import losses

  params = model.init(key, ModelConfig(p=P, width=K))
  pairs = _pairs(jax.random.fold_in(key, 1))
  chex.assert_trees_all_close(
    model.apply(params, pairs, "gather"),
    model.apply(params, pairs, "one_hot"),
    rtol=1e-5,
  )
  batch = data.make_batch(pairs, jnp.sum(pairs, 1) % P)
  value_grads = [
    jax.value_and_grad(losses.make_loss(name, form))(params, batch)
    for form in model.FORMS
  ]
  chex.assert_trees_all_close(*value_grads, rtol=1e-5, atol=1e-6)


def test_form_default_and_bad_form():
  assert model.default_form() == (
    "one_hot" if jax.default_backend() == "cpu" else "gather"
  )
  params = model.init(jax.random.key(0), ModelConfig(p=P, width=K))
  with pytest.raises(ValueError, match="form='dense' is invalid"):
    model.apply(params, _pairs(jax.random.key(1)), "dense")
