"""Shared pytest setup: strict rank promotion, a fixed PRNG key and cheap
compiles for compile-bound tests."""

import contextlib

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key() -> jax.Array:
  """A fixed PRNG key; split or fold it in, never reuse it for two draws."""
  return jax.random.key(0)


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
  with _unoptimized_compiles():
    yield


@pytest.fixture
def cheap_compiles_one_test():
  """``cheap_compiles`` for one test of a module whose other tests run
  long programs or hold tight bounds
  (``@pytest.mark.usefixtures("cheap_compiles_one_test")``): for slow-tier
  tests that compile several small programs and check them against each
  other or against a computation of their own, not a statistical bound.
  Consecutive such tests share their programs; the caches are cleared
  before any other test (``pytest_runtest_teardown``)."""
  global _UNOPTIMIZED_CACHED
  with _unoptimized_compiles(clear=False):
    yield
  _UNOPTIMIZED_CACHED = True


_UNOPTIMIZED_CACHED = False  # JAX's caches may hold unoptimized programs.


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
  """Clears JAX's caches after a ``cheap_compiles_one_test`` test unless the
  next test uses it too."""
  del item
  global _UNOPTIMIZED_CACHED
  try:
    return (yield)
  finally:
    names = getattr(nextitem, "fixturenames", ())
    if _UNOPTIMIZED_CACHED and "cheap_compiles_one_test" not in names:
      jax.clear_caches()
      _UNOPTIMIZED_CACHED = False


@contextlib.contextmanager
def _unoptimized_compiles(clear: bool = True):
  """``jax_disable_most_optimizations`` on, here and in subprocesses; the
  caches cleared on leaving unless ``clear`` is False."""
  before = jax.config.read("jax_disable_most_optimizations")
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
      yield
    finally:
      jax.config.update("jax_disable_most_optimizations", before)
      if clear:
        jax.clear_caches()  # the flag is not in the compile cache's key.
