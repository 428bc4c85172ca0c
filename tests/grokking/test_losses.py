"""Tests for slt_jax.grokking.losses on hand-computed cases."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax.grokking import data, losses, model
from slt_jax.grokking.config import LOSSES, ModelConfig

# A 3x2 example.  R = Y - Yhat = [[0.5, -0.5], [0, 1], [-1, -1]].
Y = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
YHAT = jnp.array([[0.5, 0.5], [0.0, 0.0], [2.0, 1.0]])
ONES3 = jnp.ones(3)


def test_mse_hand_computed():
  # ||R||^2 = 0.25 + 0.25 + 0 + 1 + 1 + 1 = 3.5;  0.5 * 3.5 / 3 = 7/12.
  np.testing.assert_allclose(losses.mse(Y, YHAT, ONES3), 7.0 / 12.0, rtol=1e-6)


def test_centered_mse_hand_computed():
  # Column means of R: (0.5 + 0 - 1)/3 = -1/6 and (-0.5 + 1 - 1)/3 = -1/6.
  # Centred column 0: 2/3, 1/6, -5/6 -> squares 16/36 + 1/36 + 25/36 = 7/6.
  # Centred column 1: -1/3, 7/6, -5/6 -> squares 4/36 + 49/36 + 25/36 = 13/6.
  # 0.5 * (7/6 + 13/6) / 3 = 5/9.
  np.testing.assert_allclose(
    losses.centered_mse(Y, YHAT, ONES3), 5.0 / 9.0, rtol=1e-6
  )


def test_centered_mse_ignores_constant_column_offsets():
  shifted = YHAT + jnp.array([[3.0, -2.0]])
  np.testing.assert_allclose(
    losses.centered_mse(Y, shifted, ONES3),
    losses.centered_mse(Y, YHAT, ONES3),
    rtol=1e-6,
  )


def test_cross_entropy_hand_computed():
  # Equal logits over 2 classes: -log(1/2).  Logits (0, log 3), label 1:
  # softmax = (1/4, 3/4), so -log(3/4).  Mean of the two.
  logits = jnp.array([[0.0, 0.0], [0.0, np.log(3.0)]])
  labels = jnp.array([0, 1])
  expected = 0.5 * (np.log(2.0) - np.log(0.75))
  np.testing.assert_allclose(
    losses.cross_entropy(labels, logits, jnp.ones(2)), expected, rtol=1e-6
  )


def test_cross_entropy_matches_manual_log_softmax(key):
  key_logits, key_labels = jax.random.split(key)
  logits = np.asarray(jax.random.normal(key_logits, (6, 5)), np.float64) * 3.0
  labels = np.asarray(jax.random.randint(key_labels, (6,), 0, 5))
  shifted = logits - logits.max(axis=1, keepdims=True)
  logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  expected = -logp[np.arange(6), labels].mean()
  out = losses.cross_entropy(
    jnp.asarray(labels), jnp.asarray(logits, jnp.float32), jnp.ones(6)
  )
  np.testing.assert_allclose(out, expected, rtol=1e-5)


@pytest.mark.parametrize("fn", [losses.mse, losses.centered_mse])
def test_zero_weight_rows_are_ignored_regression(fn):
  garbage = jnp.array([[100.0, -50.0]])
  y = jnp.concatenate([Y, garbage])
  yhat = jnp.concatenate([YHAT, -garbage])
  weights = jnp.array([1.0, 1.0, 1.0, 0.0])
  np.testing.assert_allclose(
    fn(y, yhat, weights), fn(Y, YHAT, ONES3), rtol=1e-6
  )


def test_zero_weight_rows_are_ignored_cross_entropy():
  logits = jnp.array([[1.0, 2.0, 0.5], [0.3, -1.0, 4.0], [50.0, -50.0, 0.0]])
  labels = jnp.array([0, 2, 1])
  weights = jnp.array([1.0, 1.0, 0.0])
  np.testing.assert_allclose(
    losses.cross_entropy(labels, logits, weights),
    losses.cross_entropy(labels[:2], logits[:2], jnp.ones(2)),
    rtol=1e-6,
  )


@pytest.mark.slow
@pytest.mark.parametrize("name", LOSSES)
def test_network_loss_zero_weights_equal_subset(key, name):
  key_init, key_pairs = jax.random.split(key)
  params = model.init(key_init, ModelConfig(p=5, width=6))
  pairs = jax.random.randint(key_pairs, (8, 2), 0, 5)
  labels = (pairs[:, 0] + pairs[:, 1]) % 5
  loss_fn = losses.make_loss(name)
  full = data.make_batch(pairs, labels)
  masked = full._replace(weights=jnp.array([1.0] * 5 + [0.0] * 3))
  subset = data.make_batch(pairs[:5], labels[:5])
  np.testing.assert_allclose(
    loss_fn(params, masked), loss_fn(params, subset), rtol=1e-5
  )


@pytest.mark.parametrize("name", LOSSES)
def test_make_loss_matches_loss_from_outputs(key, name):
  params = model.init(key, ModelConfig(p=5, width=6))
  batch = data.make_batch(
    jnp.array([[0, 1], [2, 3], [4, 4]]), jnp.array([1, 0, 3])
  )
  out = model.apply(params, batch.pairs)
  np.testing.assert_allclose(
    losses.make_loss(name)(params, batch),
    losses.loss_from_outputs(name, out, batch.labels, batch.weights),
    rtol=1e-6,
  )


def test_loss_from_outputs_regression_uses_one_hot_targets():
  labels = jnp.array([0, 1, 0])  # one-hot rows are exactly Y.
  np.testing.assert_allclose(
    losses.loss_from_outputs("centered_mse", YHAT, labels, ONES3),
    5.0 / 9.0,
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    losses.loss_from_outputs("mse", YHAT, labels, ONES3), 7.0 / 12.0, rtol=1e-6
  )


def test_accuracy_from_outputs():
  out = jnp.array(
    [[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.0, 1.0, 0.0], [0.4, 0.3, 0.3]]
  )
  labels = jnp.array([0, 1, 1, 2])  # hits: yes, no, yes, no.
  np.testing.assert_allclose(
    losses.accuracy_from_outputs(out, labels, jnp.ones(4)), 0.5
  )
  np.testing.assert_allclose(
    losses.accuracy_from_outputs(out, labels, jnp.array([1.0, 0.0, 1.0, 0.0])),
    1.0,
  )
  np.testing.assert_allclose(
    losses.accuracy_from_outputs(out, labels, jnp.array([0.0, 1.0, 1.0, 1.0])),
    1.0 / 3.0,
    rtol=1e-6,
  )


def test_network_accuracy(key):
  params = model.init(key, ModelConfig(p=5, width=6))
  pairs = jnp.array([[0, 1], [2, 3], [4, 4], [1, 1]])
  out = np.asarray(model.apply(params, pairs))
  labels = jnp.asarray(out.argmax(axis=1))
  labels = labels.at[0].set((labels[0] + 1) % 5)  # one deliberate miss.
  acc = losses.accuracy(params, data.make_batch(pairs, labels))
  np.testing.assert_allclose(acc, 0.75)


@pytest.mark.parametrize("name", ["huber", "CE", ""])
def test_bad_loss_name_raises(name):
  with pytest.raises(ValueError, match=f"loss={name!r}"):
    losses.make_loss(name)
  with pytest.raises(ValueError, match=f"loss={name!r}"):
    losses.loss_from_outputs(name, YHAT, jnp.array([0, 1, 0]), ONES3)


@pytest.mark.slow
class GradientTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_gradients_finite_and_shaped(self):
    key_init, key_pairs = jax.random.split(jax.random.key(4))
    params = model.init(key_init, ModelConfig(p=7, width=10))
    pairs = jax.random.randint(key_pairs, (12, 2), 0, 7)
    batch = data.make_batch(pairs, (pairs[:, 0] + pairs[:, 1]) % 7)
    for name in LOSSES:
      loss, grads = self.variant(jax.value_and_grad(losses.make_loss(name)))(
        params, batch
      )
      chex.assert_shape(loss, ())
      chex.assert_trees_all_equal_shapes(grads, params)
      chex.assert_tree_all_finite((loss, grads))
      assert any(np.abs(g).max() > 0 for g in jax.tree.leaves(grads))
