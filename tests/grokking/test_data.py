"""Tests for slt_jax.grokking.data: shapes, labels, splits and input validation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax.grokking import data
from slt_jax.grokking.config import DataConfig


def _pair_set(batch: data.Batch) -> set:
  return {tuple(int(v) for v in row) for row in np.asarray(batch.pairs)}


@pytest.mark.parametrize("p", [5, 7, 11])
def test_shapes_and_dtypes(key, p):
  d = data.modular_arithmetic(key, DataConfig(p=p, train_frac=0.4))
  n = round(0.4 * p * p)
  chex.assert_shape(d.all.pairs, (p * p, 2))
  chex.assert_shape((d.all.labels, d.all.weights), (p * p,))
  chex.assert_shape(d.train.pairs, (n, 2))
  chex.assert_shape(d.val.pairs, (p * p - n, 2))
  chex.assert_type((d.all.pairs, d.all.labels), jnp.int32)
  chex.assert_type(d.all.weights, jnp.float32)
  np.testing.assert_array_equal(d.all.weights, 1.0)
  assert d.num_train == n and d.p == p


@pytest.mark.parametrize(
  "op, fn",
  [
    ("+", lambda a, b: a + b),
    ("-", lambda a, b: a - b),
    ("*", lambda a, b: a * b),
  ],
)
def test_labels(key, op, fn):
  p = 7
  d = data.modular_arithmetic(key, DataConfig(p=p, op=op))
  pairs, labels = np.asarray(d.all.pairs), np.asarray(d.all.labels)
  for (a, b), y in zip(pairs, labels):
    assert y == fn(int(a), int(b)) % p
  assert labels.min() >= 0 and labels.max() < p


def test_modular_addition_is_plus(key):
  d = data.modular_addition(p=5, key=key, num_train=10)
  np.testing.assert_array_equal(
    d.all.labels, (d.all.pairs[:, 0] + d.all.pairs[:, 1]) % 5
  )
  assert d.num_train == 10


@pytest.mark.parametrize(
  "p, frac, expected", [(5, 0.4, 10), (7, 0.5, 24), (11, 0.3, 36)]
)
def test_split_size_from_train_frac(key, p, frac, expected):
  d = data.modular_arithmetic(key, DataConfig(p=p, train_frac=frac))
  assert d.train.labels.shape[0] == expected
  assert d.val.labels.shape[0] == p * p - expected


@pytest.mark.parametrize("num_train", [1, 17, 48])
def test_split_size_from_num_train(key, num_train):
  cfg = DataConfig(p=7, train_frac=0.9, num_train=num_train)
  d = data.modular_arithmetic(key, cfg)
  assert cfg.train_size == num_train
  assert d.train.pairs.shape[0] == num_train
  assert d.val.pairs.shape[0] == 49 - num_train


def test_split_is_disjoint_and_complete(key):
  p = 11
  d = data.modular_arithmetic(key, DataConfig(p=p, train_frac=0.4))
  train, val = _pair_set(d.train), _pair_set(d.val)
  assert len(train) == d.num_train and len(val) == p * p - d.num_train
  assert not train & val
  assert train | val == {(a, b) for a in range(p) for b in range(p)}


def test_same_key_same_split_other_key_other_split(key):
  cfg = DataConfig(p=11)
  d1 = data.modular_arithmetic(key, cfg)
  d2 = data.modular_arithmetic(key, cfg)
  d3 = data.modular_arithmetic(jax.random.fold_in(key, 1), cfg)
  chex.assert_trees_all_equal(d1.all, d2.all)
  assert _pair_set(d1.train) != _pair_set(d3.train)


def test_smaller_train_set_is_prefix(key):
  small = data.modular_arithmetic(key, DataConfig(p=7, num_train=10))
  large = data.modular_arithmetic(key, DataConfig(p=7, num_train=30))
  chex.assert_trees_all_equal(small.all, large.all)
  assert _pair_set(small.train) <= _pair_set(large.train)


def test_one_hot_inputs():
  pairs = jnp.array([[0, 0], [1, 4], [4, 2]])
  x = data.one_hot_inputs(pairs, 5)
  chex.assert_shape(x, (3, 10))
  chex.assert_type(x, jnp.float32)
  expected = np.zeros((3, 10), np.float32)
  for i, (a, b) in enumerate(np.asarray(pairs)):
    expected[i, a] = 1.0
    expected[i, 5 + b] = 1.0
  np.testing.assert_array_equal(x, expected)


def test_make_batch():
  batch = data.make_batch(jnp.array([[1, 2], [3, 4]]), jnp.array([3, 0]))
  chex.assert_shape(batch.pairs, (2, 2))
  chex.assert_type((batch.pairs, batch.labels), jnp.int32)
  np.testing.assert_array_equal(batch.weights, [1.0, 1.0])


def test_make_batch_empty_raises():
  with pytest.raises(ValueError, match="empty"):
    data.make_batch(jnp.zeros((0, 2), jnp.int32), jnp.zeros((0,), jnp.int32))


@pytest.mark.parametrize(
  "kwargs, name",
  [
    ({"p": 51}, "p=51"),
    ({"p": 2}, "p=2"),
    ({"p": 1}, "p=1"),
    ({"op": "/"}, "op='/'"),
    ({"train_frac": 0.0}, "train_frac=0.0"),
    ({"train_frac": 1.0}, "train_frac=1.0"),
    ({"train_frac": 1.5}, "train_frac=1.5"),
    ({"p": 5, "num_train": 0}, "num_train=0"),
    ({"p": 5, "num_train": 25}, "num_train=25"),
    ({"p": 5, "num_train": 30}, "num_train=30"),
  ],
)
def test_bad_config_raises_naming_value(kwargs, name):
  with pytest.raises(ValueError, match=name.replace("(", r"\(")):
    DataConfig(**kwargs)


def test_train_frac_giving_empty_split_raises(key):
  with pytest.raises(ValueError, match="train_frac"):
    data.modular_arithmetic(key, DataConfig(p=3, train_frac=0.01))
