"""Losses and accuracy as ``fn(params, batch) -> scalar`` factories.

One factory builds the function that trains the network and that the LLC
engine samples, so both see the same loss. Every mean is weighted by
``batch.weights`` (1 = example present, 0 = padding), which lets a fixed-size
array hold sets of different sizes.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from slt_jax import model
from slt_jax.config import LOSSES
from slt_jax.data import Batch
from slt_jax.types import ArrayTree

LossFn = Callable[[ArrayTree, Batch], jax.Array]


def centered_mse(y_BxP: jax.Array, yhat_BxP: jax.Array,
                 w_B: jax.Array) -> jax.Array:
  """``0.5 ||R - mean_rows(R)||_F^2 / N`` with ``R = Y - Yhat`` (weighted).

  Args:
    y_BxP: (B, P) targets.
    yhat_BxP: (B, P) predictions.
    w_B: (B,) example weights.

  Returns:
    Scalar loss.
  """
  r_BxP = y_BxP - yhat_BxP
  total = jnp.sum(w_B)
  mean_1xP = (w_B @ r_BxP)[None, :] / total
  return 0.5 * jnp.sum(w_B[:, None] * jnp.square(r_BxP - mean_1xP)) / total


def mse(y_BxP: jax.Array, yhat_BxP: jax.Array, w_B: jax.Array) -> jax.Array:
  """``0.5 ||Y - Yhat||_F^2 / N`` (weighted); shapes as ``centered_mse``."""
  return 0.5 * jnp.sum(w_B[:, None] * jnp.square(y_BxP - yhat_BxP)) / jnp.sum(w_B)


def cross_entropy(labels_B: jax.Array, logits_BxP: jax.Array,
                  w_B: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy (weighted).

  Args:
    labels_B: (B,) integer labels.
    logits_BxP: (B, P) logits.
    w_B: (B,) example weights.

  Returns:
    Scalar loss.
  """
  logp_BxP = jax.nn.log_softmax(logits_BxP)
  nll_B = -jnp.take_along_axis(logp_BxP, labels_B[:, None], axis=1)[:, 0]
  return jnp.sum(w_B * nll_B) / jnp.sum(w_B)


def loss_from_outputs(name: str, out_BxP: jax.Array, labels_B: jax.Array,
                      w_B: jax.Array) -> jax.Array:
  """The loss ``name`` of network outputs against integer labels.

  Args:
    name: ``centered_mse``, ``mse`` or ``cross_entropy``.
    out_BxP: (B, P) network outputs.
    labels_B: (B,) integer labels.
    w_B: (B,) example weights.

  Returns:
    Scalar loss.
  """
  if name not in LOSSES:
    raise ValueError(f"loss={name!r} is invalid: must be one of {LOSSES}")
  if name == "cross_entropy":
    return cross_entropy(labels_B, out_BxP, w_B)
  y_BxP = jax.nn.one_hot(labels_B, out_BxP.shape[1], dtype=out_BxP.dtype)
  fn = centered_mse if name == "centered_mse" else mse
  return fn(y_BxP, out_BxP, w_B)


def make_loss(name: str) -> LossFn:
  """Builds ``loss(params, batch)`` for the quadratic network.

  Args:
    name: ``centered_mse``, ``mse`` or ``cross_entropy``.

  Returns:
    A pure scalar loss over a Batch.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from slt_jax import data, model
    >>> from slt_jax.config import ModelConfig
    >>> params = model.init(jax.random.key(0), ModelConfig(p=5, width=4))
    >>> batch = data.make_batch(jnp.array([[1, 2]]), jnp.array([3]))
    >>> make_loss("mse")(params, batch).shape
    ()
  """
  if name not in LOSSES:
    raise ValueError(f"loss={name!r} is invalid: must be one of {LOSSES}")

  def loss_fn(params: ArrayTree, batch: Batch) -> jax.Array:
    return loss_from_outputs(name, model.apply(params, batch.pairs),
                             batch.labels, batch.weights)

  return loss_fn


def accuracy_from_outputs(out_BxP: jax.Array, labels_B: jax.Array,
                          w_B: jax.Array) -> jax.Array:
  """Weighted fraction of rows whose argmax is the label; shapes as above."""
  hit_B = jnp.argmax(out_BxP, axis=1) == labels_B
  return jnp.sum(w_B * hit_B) / jnp.sum(w_B)


def accuracy(params: ArrayTree, batch: Batch) -> jax.Array:
  """Weighted accuracy of the quadratic network on a Batch."""
  return accuracy_from_outputs(model.apply(params, batch.pairs), batch.labels,
                               batch.weights)
