"""Flax models as the engine's ``(params, apply)`` pair.

The engine takes a parameter pytree and ``loss_fn(params, batch)``. A Flax
model becomes both with one call: ``split_nnx`` for a ``flax.nnx`` module,
``split_linen`` for a Linen module and its variables. ``params`` holds the
trainable variables only (an ``nnx.State`` or the ``"params"`` collection)
and goes into ``estimate_llc``, ``compile_sweep``, ``autotune``, ``mask=``
and ``slt_jax.persist`` as it is; ``apply(params, *args, **kwargs)`` runs
the model with every other variable (batch statistics, RNG state) held
fixed at its value at the split. The caller writes the loss::

    params, apply = split_nnx(model)
    loss_fn = lambda p, batch: jnp.mean((apply(p, batch["x"]) - batch["y"]) ** 2)

Several models of one architecture (seeds, checkpoints) are one batch of
points: stack their ``params`` leaf by leaf (``jax.tree.map(lambda *x:
jnp.stack(x), *states)``) and pass ``batch_ndim=1``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
from flax import nnx

from slt_jax.tree_types import ArrayTree

__all__ = ["split_linen", "split_nnx"]


def split_nnx(
  model: nnx.Module, trainable: Any = nnx.Param, *, eval_mode: bool = True
) -> tuple[nnx.State, Callable]:
  """The trainable state of an ``nnx`` module and a pure function applying it.

  Args:
    model: a ``flax.nnx`` module (left unchanged).
    trainable: an ``nnx`` filter of the variables that move (default
      ``nnx.Param``); every other variable is held fixed.
    eval_mode: apply a copy of the model put in evaluation mode
      (``Module.eval()``: dropout off, batch norm on its running
      statistics), as an LLC at a trained point needs.

  Returns:
    (params, apply): ``params`` an ``nnx.State`` of the trainable variables
    (its leaves are the arrays inside them); ``apply(params, *args,
    **kwargs)`` calls the model rebuilt with ``params``.

  Raises:
    TypeError: if ``model`` is not an ``nnx.Module``.
    ValueError: if ``trainable`` selects no variable of ``model``.

  Example:
    >>> import jax.numpy as jnp
    >>> model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    >>> params, apply = split_nnx(model)
    >>> sorted(params.keys())
    ['bias', 'kernel']
    >>> zero = jax.tree.map(jnp.zeros_like, params)
    >>> apply(zero, jnp.ones((4, 3))).tolist()
    [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
  """
  if not isinstance(model, nnx.Module):
    raise TypeError(
      f"model={type(model).__name__} is invalid: must be a flax.nnx.Module"
    )
  if eval_mode:
    model = nnx.clone(model)
    model.eval()
  graphdef, params, fixed = nnx.split(model, trainable, ...)
  if not jax.tree.leaves(params):
    raise ValueError(
      f"trainable={trainable!r} is invalid: it selects no variable of "
      f"{type(model).__name__}"
    )

  def apply(params: nnx.State, *args, **kwargs):
    return nnx.merge(graphdef, params, fixed)(*args, **kwargs)

  return params, apply


def split_linen(
  module, variables: Mapping[str, ArrayTree], trainable: str = "params"
) -> tuple[ArrayTree, Callable]:
  """One collection of Linen variables and a pure function applying them.

  Args:
    module: a ``flax.linen`` module.
    variables: its variables, ``module.init(...)``'s result, e.g.
      ``{"params": ..., "batch_stats": ...}``.
    trainable: the collection that moves; the others are held fixed.

  Returns:
    (params, apply): ``params = variables[trainable]``; ``apply(params,
    *args, **kwargs)`` is ``module.apply`` with ``params`` in place of that
    collection (keyword arguments such as ``train=False`` pass through; a
    call that would update a collection raises, as Linen's does without
    ``mutable=``).

  Raises:
    ValueError: if ``variables`` is not a mapping holding ``trainable``.

  Example:
    >>> import flax.linen as nn
    >>> import jax.numpy as jnp
    >>> module = nn.Dense(2)
    >>> variables = module.init(jax.random.key(0), jnp.ones((1, 3)))
    >>> params, apply = split_linen(module, variables)
    >>> sorted(params)
    ['bias', 'kernel']
    >>> apply(jax.tree.map(jnp.zeros_like, params), jnp.ones((1, 3))).tolist()
    [[0.0, 0.0]]
  """
  if not isinstance(variables, Mapping) or trainable not in variables:
    found = list(variables) if isinstance(variables, Mapping) else None
    raise ValueError(
      f"variables must be a mapping of collections holding "
      f"trainable={trainable!r}: got {type(variables).__name__} with "
      f"collections {found}"
    )
  fixed = {
    name: value for name, value in variables.items() if name != trainable
  }

  def apply(params: ArrayTree, *args, **kwargs):
    return module.apply({trainable: params, **fixed}, *args, **kwargs)

  return variables[trainable], apply
