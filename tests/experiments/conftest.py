"""Experiments under test keep their trained runs in a temporary store; the
compile-bound smoke tests compile with XLA's backend optimizations off
(``cheap_compiles``, in ``tests/conftest.py``; ``optimized_compiles`` turns
them back on for one test)."""

import pathlib

import jax
import pytest

from experiments import store


@pytest.fixture(autouse=True)
def _private_run_store(tmp_path, monkeypatch):
  """Points ``experiments.store.RUNS_DIR`` at a temporary folder."""
  monkeypatch.setattr(store, "RUNS_DIR", str(tmp_path / "runs"))


@pytest.fixture
def optimized_compiles(monkeypatch):
  """Turns XLA's optimizations back on for one test that runs long
  programs (a real training run) rather than compiling many small ones."""
  monkeypatch.delenv("JAX_DISABLE_MOST_OPTIMIZATIONS", raising=False)
  jax.config.update("jax_disable_most_optimizations", False)
  jax.clear_caches()
  yield
  jax.config.update("jax_disable_most_optimizations", True)
  jax.clear_caches()


def pytest_collection_modifyitems(config, items):
  """Every experiment test runs experiments end to end: the slow tier."""
  del config
  here = pathlib.Path(__file__).parent
  for item in items:
    if here in item.path.parents:
      item.add_marker(pytest.mark.slow)
