"""Quadratic network ``f(x) = V (W x)^2`` without biases.

For one-hot inputs ``x = [e_a ; e_b]`` the first layer is ``W[:, a] + W[:, p + b]``.
``apply`` takes the integer pairs and forms that sum in one of two ways
(``FORMS``), equal up to float rounding:

- ``one_hot``: a one-hot matmul (14·B·p·K FLOPs per gradient). The CPU default:
  at p=53, K=1024, B=128 it was 1.05x faster for both SGLD and training
  (``figures/bench_forms/results.json``; earlier measurements gave 1.1x and
  1.5x, and a shorter run once gave the gather 1.1x for SGLD: on CPU the two
  are within run-to-run noise).
- ``gather``: two row gathers (6·B·p·K FLOPs per gradient), whose gradient is
  a scatter-add, which XLA runs slowly on CPU. The default on GPU/TPU, where
  it is expected to win (``python -m experiments.bench --device-report``
  measures both on the device at hand).

``apply_one_hot`` takes dense inputs. The model knows no optimizer.
"""

from __future__ import annotations

from typing import Optional

import chex
import jax
import jax.numpy as jnp

from slt_jax.grokking import data
from slt_jax.grokking.config import ModelConfig
from slt_jax.tree_types import ArrayTree, PRNGKey

__all__ = [
  "FORMS",
  "default_form",
  "init",
  "apply",
  "apply_one_hot",
  "num_params",
]

FORMS = ("one_hot", "gather")


def default_form(backend: Optional[str] = None) -> str:
  """The first-layer form for ``backend`` (default: JAX's default backend).

  >>> default_form("cpu"), default_form("gpu")
  ('one_hot', 'gather')
  """
  return "one_hot" if (backend or jax.default_backend()) == "cpu" else "gather"


def _kaiming_uniform(key: PRNGKey, shape: tuple[int, int]) -> jax.Array:
  """PyTorch ``nn.Linear`` default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / jnp.sqrt(shape[1])
  return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def _lecun_normal(key: PRNGKey, shape: tuple[int, int]) -> jax.Array:
  return jax.nn.initializers.lecun_normal(in_axis=1, out_axis=0)(key, shape)


def init(key: PRNGKey, cfg: ModelConfig) -> dict[str, jax.Array]:
  """Initial parameters.

  Args:
    key: PRNG key.
    cfg: model configuration.

  Returns:
    ``{"W": (K, 2p), "V": (p, K)}`` float32.

  Example:
    >>> import jax
    >>> params = init(jax.random.key(0), ModelConfig(p=5, width=8))
    >>> params["W"].shape, params["V"].shape
    ((8, 10), (5, 8))
  """
  key_w, key_v = jax.random.split(key)
  init_fn = _kaiming_uniform if cfg.init == "kaiming_uniform" else _lecun_normal
  w_KxD = cfg.init_scale * init_fn(key_w, (cfg.width, 2 * cfg.p))
  v_PxK = cfg.init_scale * init_fn(key_v, (cfg.p, cfg.width))
  return {"W": w_KxD, "V": v_PxK}


def apply(
  params: ArrayTree, pairs_Bx2: jax.Array, form: Optional[str] = None
) -> jax.Array:
  """Outputs for integer pairs ``(a, b)``, i.e. for inputs ``[e_a ; e_b]``.

  Args:
    params: ``{"W": (K, 2p), "V": (p, K)}``.
    pairs_Bx2: (B, 2) int residues.
    form: ``one_hot`` or ``gather`` (see the module docstring); None:
      ``default_form()``.

  Returns:
    (B, p) outputs.
  """
  form = default_form() if form is None else form
  if form not in FORMS:
    raise ValueError(f"form={form!r} is invalid: must be one of {FORMS}")
  p = params["V"].shape[0]
  chex.assert_shape(params["W"], (params["V"].shape[1], 2 * p))
  if form == "gather":
    w_DxK = params["W"].T
    h_BxK = w_DxK[pairs_Bx2[:, 0]] + w_DxK[p + pairs_Bx2[:, 1]]
    return jnp.square(h_BxK) @ params["V"].T
  x_BxD = data.one_hot_inputs(pairs_Bx2, p).astype(params["W"].dtype)
  return apply_one_hot(params, x_BxD)


def apply_one_hot(params: ArrayTree, x_BxD: jax.Array) -> jax.Array:
  """Outputs for dense inputs ``x`` (the one-hot matmul form).

  Args:
    params: ``{"W": (K, D), "V": (m, K)}``.
    x_BxD: (B, D) inputs.

  Returns:
    (B, m) outputs.
  """
  chex.assert_rank(x_BxD, 2)
  chex.assert_axis_dimension(x_BxD, 1, params["W"].shape[1])
  return jnp.square(x_BxD @ params["W"].T) @ params["V"].T


def num_params(params: ArrayTree) -> int:
  """Total number of scalars in a parameter pytree."""
  return sum(x.size for x in jax.tree.leaves(params))
