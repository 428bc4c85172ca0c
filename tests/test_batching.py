"""Tests for slt_jax.batching: epoch-wise shuffling, carried permutations."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax import batching

N, B, CAPACITY = 37, 5, 40  # 7 full batches per epoch, 2 examples left over


def _direct(key, step, n=N):
  """Indices of ``step`` recomputed from scratch (one sort per call)."""
  epoch = step // batching.steps_per_epoch(n, B)
  perm = batching.epoch_permutation(key, epoch, n, CAPACITY)
  return batching.batch_of_step(perm, step, n, B)


def _stream(key, start, num_steps, n=N):
  """Indices of ``num_steps`` steps from ``start``, carrying the permutation."""

  def step(perm, t):
    return batching.next_batch(key, perm, t, n, B)

  perm = batching.first_permutation(key, start, n, B, CAPACITY)
  _, idx = jax.lax.scan(step, perm, start + jnp.arange(num_steps))
  return idx


def test_epoch_permutation_permutes_the_prefix(key):
  perm = np.asarray(batching.epoch_permutation(key, 3, N, CAPACITY))
  chex.assert_shape(perm, (CAPACITY,))
  np.testing.assert_array_equal(np.sort(perm[:N]), np.arange(N))
  np.testing.assert_array_equal(perm[N:], np.arange(N, CAPACITY))


def test_epochs_draw_disjoint_full_batches(key):
  idx = np.asarray(_stream(key, 0, 3 * 7))
  chex.assert_shape(idx, (21, B))
  assert idx.dtype == np.int32
  for epoch in range(3):
    rows = idx[7 * epoch : 7 * (epoch + 1)].ravel()
    assert len(set(rows.tolist())) == 35 and rows.max() < N
  assert not np.array_equal(idx[:7], idx[7:14])


@pytest.mark.parametrize("start", [0, 3, 7, 12])
def test_carried_permutation_equals_recomputing_every_step(key, start):
  streamed = np.asarray(_stream(key, start, 30))
  direct = np.stack(
    [np.asarray(_direct(key, t)) for t in range(start, start + 30)]
  )
  np.testing.assert_array_equal(streamed, direct)


def test_vmapped_over_keys_keeps_one_sort_per_epoch(key):
  keys = jax.random.split(key, 3)
  run = jax.vmap(lambda k: _stream(k, 0, 16))
  out = np.asarray(run(keys))
  for i in range(3):
    np.testing.assert_array_equal(out[i], np.asarray(_stream(keys[i], 0, 16)))
  # The redraw stays a branch (not a select that sorts every step).
  assert "cond[" in str(jax.make_jaxpr(run)(keys))


def test_batched_num_examples_falls_back_to_the_same_results(key):
  sizes = jnp.array([N, 20])
  out = jax.vmap(lambda n: _stream(key, 0, 12, n))(sizes)
  for i, n in enumerate([N, 20]):
    np.testing.assert_array_equal(
      np.asarray(out[i]), np.asarray(_stream(key, 0, 12, n))
    )
  assert np.asarray(out[1]).max() < 20
