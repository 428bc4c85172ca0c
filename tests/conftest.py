"""Shared pytest setup: strict rank promotion and a fixed PRNG key."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key() -> jax.Array:
  """A fixed PRNG key; split or fold it in, never reuse it for two draws."""
  return jax.random.key(0)
