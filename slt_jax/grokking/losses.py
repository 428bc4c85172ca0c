"""Losses and accuracy as ``fn(params, batch) -> scalar`` factories.

One factory builds the function that trains the network and that the LLC
engine samples, so both see the same loss. Every mean is weighted by
``batch.weights`` (1 = example present, 0 = padding), which lets a fixed-size
array hold sets of different sizes.

``make_per_example_loss`` builds the per-example forms ``fn(params, batch) ->
(B,)`` that ``slt_jax.llc.estimate_llc(..., observables=...)`` records during
sampling: their weighted mean is the batch loss. For ``mse`` and
``cross_entropy`` each entry depends on its own example only. Centred MSE is
the MSE of the network plus an output bias fitted in closed form to the
batch (``min_b mean_i ||r_i - b||^2`` is attained at ``b = mean_i r_i``), so
its per-example loss of a pair is ``0.5 ||r_i - mean_S r||^2``: the pair's
squared error under the bias fitted to the set S it is evaluated with. It
depends on the rest of S through that one mean (O(1/|S|) per example), so a
set must be evaluated in one call (the engine's default) for the mean of the
per-example losses to be the set's centred MSE.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from slt_jax.grokking import model
from slt_jax.grokking.config import LOSSES
from slt_jax.grokking.data import Batch
from slt_jax.tree_types import ArrayTree

LossFn = Callable[[ArrayTree, Batch], jax.Array]


def centered_mse(
  y_BxP: jax.Array, yhat_BxP: jax.Array, w_B: jax.Array
) -> jax.Array:
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
  return (
    0.5 * jnp.sum(w_B[:, None] * jnp.square(y_BxP - yhat_BxP)) / jnp.sum(w_B)
  )


def cross_entropy(
  labels_B: jax.Array, logits_BxP: jax.Array, w_B: jax.Array
) -> jax.Array:
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


def loss_from_outputs(
  name: str, out_BxP: jax.Array, labels_B: jax.Array, w_B: jax.Array
) -> jax.Array:
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


def make_loss(name: str, form: Optional[str] = None) -> LossFn:
  """Builds ``loss(params, batch)`` for the quadratic network.

  Args:
    name: ``centered_mse``, ``mse`` or ``cross_entropy``.
    form: the network's first-layer form (``model.FORMS``; None: the
      backend's default, ``model.default_form()``); the same function either
      way, up to float rounding.

  Returns:
    A pure scalar loss over a Batch.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from slt_jax.grokking import data, model
    >>> from slt_jax.grokking.config import ModelConfig
    >>> params = model.init(jax.random.key(0), ModelConfig(p=5, width=4))
    >>> batch = data.make_batch(jnp.array([[1, 2]]), jnp.array([3]))
    >>> make_loss("mse")(params, batch).shape
    ()
  """
  if name not in LOSSES:
    raise ValueError(f"loss={name!r} is invalid: must be one of {LOSSES}")
  if form is not None and form not in model.FORMS:
    raise ValueError(f"form={form!r} is invalid: must be one of {model.FORMS}")

  def loss_fn(params: ArrayTree, batch: Batch) -> jax.Array:
    return loss_from_outputs(
      name, model.apply(params, batch.pairs, form), batch.labels, batch.weights
    )

  return loss_fn


def per_example_from_outputs(
  name: str, out_BxP: jax.Array, labels_B: jax.Array, w_B: jax.Array
) -> jax.Array:
  """Per-example losses ``(B,)`` whose ``w``-weighted mean is the loss ``name``.

  Args:
    name: ``centered_mse``, ``mse`` or ``cross_entropy``.
    out_BxP: (B, P) network outputs.
    labels_B: (B,) integer labels.
    w_B: (B,) example weights; they enter only ``centered_mse``'s centre
      (the weighted mean residual). Every row gets its loss, padding included.

  Returns:
    (B,) losses: ``0.5 ||y_i - yhat_i||^2`` (mse), ``-log softmax_i[label_i]``
    (cross_entropy), ``0.5 ||r_i - sum_j w_j r_j / sum_j w_j||^2`` with
    ``r = Y - Yhat`` (centered_mse; see the module docstring).

  Example:
    >>> out = jnp.array([[1.0, 0.0], [0.0, 0.0]])
    >>> per_example_from_outputs("mse", out, jnp.array([0, 1]), jnp.ones(2))
    Array([0. , 0.5], dtype=float32)
  """
  if name not in LOSSES:
    raise ValueError(f"loss={name!r} is invalid: must be one of {LOSSES}")
  if name == "cross_entropy":
    logp_BxP = jax.nn.log_softmax(out_BxP)
    return -jnp.take_along_axis(logp_BxP, labels_B[:, None], axis=1)[:, 0]
  r_BxP = (
    jax.nn.one_hot(labels_B, out_BxP.shape[1], dtype=out_BxP.dtype) - out_BxP
  )
  if name == "centered_mse":
    r_BxP = r_BxP - (w_B @ r_BxP)[None, :] / jnp.sum(w_B)
  return 0.5 * jnp.sum(jnp.square(r_BxP), axis=1)


def make_per_example_loss(name: str) -> Callable[[ArrayTree, Batch], jax.Array]:
  """Builds ``per_example(params, batch) -> (B,)`` for the quadratic network.

  The per-example form of ``make_loss(name)`` (``per_example_from_outputs``):
  ``sum(w * per_example) / sum(w)`` equals ``make_loss(name)`` on the same
  batch (up to rounding). Pass it as ``per_example_loss_fn`` to
  ``slt_jax.llc.estimate_llc`` with ``observables``.

  Args:
    name: ``centered_mse``, ``mse`` or ``cross_entropy``.

  Returns:
    A pure function of (params, Batch), forward only: the network in its
    gather form (``model.apply(..., "gather")``, a third of the one-hot
    form's FLOPs; no gradient is taken, so the scatter-add that makes the
    gather slow to train on CPU never arises).

  Example:
    >>> import jax
    >>> from slt_jax.grokking import data
    >>> from slt_jax.grokking.config import ModelConfig
    >>> params = model.init(jax.random.key(0), ModelConfig(p=5, width=4))
    >>> batch = data.make_batch(jnp.array([[1, 2], [0, 4]]), jnp.array([3, 4]))
    >>> make_per_example_loss("centered_mse")(params, batch).shape
    (2,)
  """
  if name not in LOSSES:
    raise ValueError(f"loss={name!r} is invalid: must be one of {LOSSES}")

  def per_example(params: ArrayTree, batch: Batch) -> jax.Array:
    return per_example_from_outputs(
      name,
      model.apply(params, batch.pairs, "gather"),
      batch.labels,
      batch.weights,
    )

  return per_example


def accuracy_from_outputs(
  out_BxP: jax.Array, labels_B: jax.Array, w_B: jax.Array
) -> jax.Array:
  """Weighted fraction of rows whose argmax is the label; shapes as above."""
  hit_B = jnp.argmax(out_BxP, axis=1) == labels_B
  return jnp.sum(w_B * hit_B) / jnp.sum(w_B)


def accuracy(
  params: ArrayTree, batch: Batch, form: Optional[str] = None
) -> jax.Array:
  """Weighted accuracy of the quadratic network on a Batch (``form`` as in
  ``make_loss``)."""
  return accuracy_from_outputs(
    model.apply(params, batch.pairs, form), batch.labels, batch.weights
  )
