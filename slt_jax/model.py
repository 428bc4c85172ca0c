"""Quadratic network ``f(x) = V (W x)^2`` without biases, in gather form.

For one-hot inputs ``x = [e_a ; e_b]`` the first layer is ``W[:, a] + W[:, p + b]``:
a gather instead of a (B, 2p) x (2p, K) matmul. ``apply_one_hot`` is the dense
form, kept for tests and for non-one-hot inputs. The model knows no optimizer.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from slt_jax.config import ModelConfig
from slt_jax.types import ArrayTree, PRNGKey


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


def apply(params: ArrayTree, pairs_Bx2: jax.Array) -> jax.Array:
  """Outputs for integer pairs via the gather form.

  Args:
    params: ``{"W": (K, 2p), "V": (p, K)}``.
    pairs_Bx2: (B, 2) int residues.

  Returns:
    (B, p) outputs.
  """
  w_KxD, v_PxK = params["W"], params["V"]
  p = v_PxK.shape[0]
  chex.assert_shape(w_KxD, (v_PxK.shape[1], 2 * p))
  chex.assert_rank(pairs_Bx2, 2)
  w_DxK = w_KxD.T
  h_BxK = w_DxK[pairs_Bx2[:, 0]] + w_DxK[p + pairs_Bx2[:, 1]]
  return jnp.square(h_BxK) @ v_PxK.T


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
