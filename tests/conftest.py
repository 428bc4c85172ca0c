"""Shared pytest setup: strict rank promotion and a fixed PRNG key."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key() -> jax.Array:
  """A fixed PRNG key; split or fold it in, never reuse it for two draws."""
  return jax.random.key(0)


@pytest.fixture(autouse=True)
def _private_run_store(tmp_path, monkeypatch):
  """Experiments under test keep their trained runs in a temporary store."""
  from experiments import store

  monkeypatch.setattr(store, "RUNS_DIR", str(tmp_path / "runs"))
