"""Shared pytest setup: strict rank promotion, a fixed PRNG key and cheap
compiles for compile-bound tests."""

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
  before = jax.config.read("jax_disable_most_optimizations")
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
      yield
    finally:
      jax.config.update("jax_disable_most_optimizations", before)
      jax.clear_caches()  # the flag is not in the compile cache's key.
