"""Cheap counter-based standard normals (the ``counter_hash`` noise).

SGLD draws one normal per parameter per step; with JAX's threefry that costs
about as much as the model's gradient on CPU (a roofline measurement). Here each
normal is a pure function of (key, counter): the per-step key gives two
32-bit words (one threefry evaluation per step), the counter of every
coordinate is hashed by two rounds of a 32-bit integer finalizer
(``hash32``, two multiplies each, keyed between the rounds), the top 24 bits
become a uniform on a symmetric odd grid in (-1, 1) (``symmetric_uniform``)
and Giles' single-precision inverse error function (``erfinv``) maps it to
N(0, 1). Everything is elementwise, so XLA fuses it into the update.

Not a cryptographic generator: its statistical checks (moments, tails, KS,
lag and cross-key correlations) are in ``tests/test_normals.py``. Draws are
bounded by ``MAX_ABS`` (about 5.42, the grid's end; JAX's own normal is
bounded likewise by float32 uniforms).
"""

from __future__ import annotations

import math
import statistics

import jax
import jax.numpy as jnp

from slt_jax.tree_types import PRNGKey

__all__ = ["hash32", "symmetric_uniform", "erfinv", "normal", "MAX_ABS"]

# The finalizer's multipliers (C. Wellons' "lowbias32", hash-prospector).
_MUL = (0x7FEB352D, 0x846CA68B)
# Giles (2010), "Approximating the erfinv function", single precision:
# polynomials in w - 2.5 (w < 5) and sqrt(w) - 3 (w >= 5),
# w = -log(1 - x^2), highest degree first.
_CENTRAL = (
  2.81022636e-08,
  3.43273939e-07,
  -3.5233877e-06,
  -4.39150654e-06,
  0.00021858087,
  -0.00125372503,
  -0.00417768164,
  0.246640727,
  1.50140941,
)
_TAIL = (
  -0.000200214257,
  0.000100950558,
  0.00134934322,
  -0.00367342844,
  0.00573950773,
  -0.0076224613,
  0.00943887047,
  1.00167406,
  2.83297682,
)
_BITS = 24  # uniform resolution: the top 24 bits of each hash.


def hash32(x: jax.Array) -> jax.Array:
  """A bijective 32-bit integer finalizer (xor-shift-multiply, two rounds).

  >>> int(hash32(jnp.uint32(0))), int(hash32(jnp.uint32(1)))
  (0, 1753845952)
  """
  x = jnp.asarray(x, jnp.uint32)
  x = x ^ (x >> 16)
  x = x * jnp.uint32(_MUL[0])
  x = x ^ (x >> 15)
  x = x * jnp.uint32(_MUL[1])
  return x ^ (x >> 16)


def symmetric_uniform(bits: jax.Array) -> jax.Array:
  """Uniforms on the odd grid ``(2k + 1 - 2^24) / 2^24``, k the top 24 bits.

  Symmetric about 0 and never 0 or ±1, exactly in float32.

  >>> symmetric_uniform(jnp.array([0, 2**32 - 1], jnp.uint32)).tolist()
  [-0.9999999403953552, 0.9999999403953552]
  """
  k = (jnp.asarray(bits, jnp.uint32) >> (32 - _BITS)).astype(jnp.int32)
  odd = 2 * k + (1 - 2**_BITS)
  return odd.astype(jnp.float32) * jnp.float32(2.0**-_BITS)


def _horner(coefficients, w: jax.Array) -> jax.Array:
  out = jnp.full_like(w, coefficients[0])
  for c in coefficients[1:]:
    out = out * w + c
  return out


def erfinv(x: jax.Array) -> jax.Array:
  """Inverse error function on (-1, 1), float32 (Giles' approximation).

  >>> round(float(erfinv(jnp.float32(0.5))), 5)
  0.47694
  """
  x = jnp.asarray(x, jnp.float32)
  w = -jnp.log((1.0 - x) * (1.0 + x))
  central = _horner(_CENTRAL, w - 2.5)
  tail = _horner(_TAIL, jnp.sqrt(w) - 3.0)
  return jnp.where(w < 5.0, central, tail) * x


# The largest |draw|: the normal quantile of the grid's end, 1 - 2^-25.
MAX_ABS = statistics.NormalDist().inv_cdf(1.0 - 2.0 ** -(_BITS + 1))


def normal(
  key: PRNGKey, shape: tuple, dtype=jnp.float32, offset: int = 0
) -> jax.Array:
  """Standard normals of ``shape`` from ``key`` and the counters
  ``offset + [0, size)`` (so disjoint offsets give independent draws).

  Args:
    key: a JAX PRNG key (its two 32-bit words come from ``random.bits``).
    shape: output shape.
    dtype: float dtype of the result (computed in float32).
    offset: first counter; ``offset + size`` must not exceed 2^32.

  Returns:
    Array of ``shape``: N(0, 1) draws.

  Raises:
    ValueError: if the counters would exceed 2^32.

  Example:
    >>> normal(jax.random.key(0), (2, 3)).shape
    (2, 3)
  """
  size = math.prod(shape)
  if offset < 0 or offset + size > 2**32:
    raise ValueError(
      f"counters [{offset}, {offset + size}) do not fit in 32 bits: "
      "counter_hash noise covers at most 2^32 coordinates per step"
    )
  words = jax.random.bits(key, (2,), jnp.uint32)
  counter = jax.lax.iota(jnp.uint32, size) + jnp.uint32(offset)
  bits = hash32(hash32(counter ^ words[0]) + words[1])
  z = jnp.float32(math.sqrt(2.0)) * erfinv(symmetric_uniform(bits))
  return z.reshape(shape).astype(dtype)
