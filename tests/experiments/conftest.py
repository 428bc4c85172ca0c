"""Experiments under test keep their trained runs in a temporary store; the
compile-bound smoke tests compile with XLA's backend optimizations off
(``cheap_compiles``; ``optimized_compiles`` turns them back on for one
test)."""

import pathlib

import jax
import pytest

from experiments import store


@pytest.fixture(autouse=True)
def _private_run_store(tmp_path, monkeypatch):
  """Points ``experiments.store.RUNS_DIR`` at a temporary folder."""
  monkeypatch.setattr(store, "RUNS_DIR", str(tmp_path / "runs"))


@pytest.fixture(scope="module")
def cheap_compiles():
  """Compiles with ``jax_disable_most_optimizations`` while a module that
  uses it runs (``pytestmark = pytest.mark.usefixtures("cheap_compiles")``),
  and in the subprocesses it starts (``JAX_DISABLE_MOST_OPTIMIZATIONS``).

  The smoke configurations are so small that compiling their programs,
  not running them, is most of these tests' time; with XLA's backend at
  optimization level 0 a CPU compile takes about 2.5x less time.
  Programs compute the same functions up to float rounding; only the
  speeds the benchmark measures are those of unoptimized code. Tests that
  run long programs or hold tight numerical bounds (the DLN benchmark's
  bias ladder fails at level 0) do not use it.
  """
  before = jax.config.read("jax_disable_most_optimizations")
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
      yield
    finally:
      jax.config.update("jax_disable_most_optimizations", before)
      jax.clear_caches()  # the flag is not in the compile cache's key.


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
