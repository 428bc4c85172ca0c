"""Bayesian influence functions and susceptibilities from recorded observables.

Both read the per-example losses that ``slt_jax.llc.estimate_llc(...,
observables={name: set}, per_example_loss_fn=...)`` records inside the
compiled chains (``res.observables[name]``: ``(..., chains, draws // k, n)``)
and are host NumPy (float64) over every point of a sweep at once; ``...`` is
the result's leading shape (settings, then the points' batch axes).

* **BIF**: ``BIF(i, j) = Cov(l_i(w), l_j(w))`` over the pooled chains
  × draws of the localized tempered posterior at each w* (devinterp 2.0.1's
  ``compute_bif`` with ``reduce_chain_dimension_method="stack"``: one mean
  over all chains and draws, normalised by N - 1), or the Pearson
  correlation. To first order, up-weighting example i by (1 + ε) in the
  tempered likelihood ``exp(-β Σ_i l_i)`` (β = nβ / n) changes ``E[l_j]`` by
  ``-ε β BIF(i, j)``.
* **Susceptibility** (Baker et al. 2025, arXiv 2504.18274, App. C.4; devinterp
  2.0.1 ``compute_susceptibilities``): for a weight restriction A and a probe
  set q, per probe example j,
  ``chi_A(j) = E_A[phi (L_n - l_j)] - E_A[phi] E_full[L_n - l_j]`` with
  ``phi = L_n(w) - L_n(w*)`` and ``L_n`` the mean per-example loss of the set
  the chains sample (``sampling``), all under the A-restricted chains except
  the one full-model expectation. No nβ factor and no sign change, as in
  devinterp. When A is the full model this is ``Cov(phi, L_n - l_j)`` =
  ``(1/nβ) d E_h[phi] / dh`` at h = 0 for the data shifted towards j
  (``L_n -> (1 - h) L_n + h l_j``); ``center="restricted"`` gives that
  covariance under A itself, the exact linear response of the restricted
  posterior. The susceptibility of a probe set is the mean over its examples
  (chi is linear in the probe loss).

Chains flagged ``diverged`` are left out of every expectation. No SGLD run is
made here and nothing about the model is assumed: the engine wall holds
(this module imports neither the model, the data nor the training code).
``effective_sample_size`` and ``split_rhat`` of the recorded observables (via
``slt_jax.llc.diagnostics``) say whether the draws behind an estimate settled.
"""

from __future__ import annotations

import numpy as np

from slt_jax.llc import diagnostics

__all__ = ["bif", "susceptibility", "effective_sample_size", "split_rhat"]

KINDS = ("covariance", "correlation")
CENTERS = ("full", "restricted")


def _observables(res, name: str) -> np.ndarray:
  """``res.observables[name]`` as float64; a clear error if missing or empty."""
  if getattr(res, "observables", None) is None:
    raise ValueError(
      "the result has no observables: run estimate_llc with "
      "observables={name: data set} and per_example_loss_fn"
    )
  if name not in res.observables:
    raise ValueError(
      f"observable {name!r} was not recorded: the result has "
      f"{sorted(res.observables)}"
    )
  values = np.asarray(res.observables[name], np.float64)
  if values.ndim < 3:
    raise ValueError(
      f"observable {name!r} has shape {values.shape}: it must be "
      "(..., chains, draws, examples)"
    )
  if values.shape[-3] * values.shape[-2] == 0:
    raise ValueError(
      f"observable {name!r} has shape {values.shape}: no draws were recorded "
      "(chains × draws is 0)"
    )
  if values.shape[-1] == 0:
    raise ValueError(
      f"observable {name!r} has shape {values.shape}: it holds no examples"
    )
  return values


def _chain_weights(res, shape: tuple) -> np.ndarray:
  """(..., chains, 1, 1) weights: 0 for diverged chains, else 1."""
  diverged = np.asarray(res.diagnostics.diverged, bool)
  if diverged.shape != shape[:-2]:
    raise ValueError(
      f"diagnostics.diverged has shape {diverged.shape}, the "
      f"observables {shape}: not one result"
    )
  return (~diverged).astype(np.float64)[..., None, None]


def _pooled_mean(x: np.ndarray, w: np.ndarray) -> np.ndarray:
  """Weighted mean over the (chain, draw) axes -3 and -2 of ``x``."""
  total = np.sum(np.broadcast_to(w, x.shape[:-1] + (1,)), axis=(-3, -2))
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.sum(w * x, axis=(-3, -2)) / total


def bif(
  res, a: str, b: str, kind: str = "covariance", per_chain: bool = False
) -> np.ndarray:
  """The Bayesian influence function between two recorded sets.

  Args:
    res: an ``LLCResult`` with observables ``a`` and ``b``.
    a, b: names of the sets (may be the same).
    kind: ``covariance`` (``Cov(l_i, l_j)``, normalised by N - 1) or
      ``correlation`` (Pearson; nan where a loss does not vary).
    per_chain: False: pool every non-diverged chain's draws (one mean);
      True: one estimate per chain, ``(..., chains, n_a, n_b)`` (their spread
      over chains, divided by sqrt(chains), is a Monte Carlo standard error of
      the pooled estimate when the chains are independent and settled).

  Returns:
    ``(..., n_a, n_b)`` (or ``(..., chains, n_a, n_b)``) float64.

  Raises:
    ValueError: an unknown set, a result without observables, an observable
      without draws or examples, or a bad kind.

  Example:
    >>> import types
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(2, 500, 1))
    >>> res = types.SimpleNamespace(
    ...     observables={"x": np.concatenate([z, 2 * z], -1)},
    ...     diagnostics=types.SimpleNamespace(diverged=np.zeros(2, bool)))
    >>> np.round(bif(res, "x", "x", kind="correlation"), 6).tolist()
    [[1.0, 1.0], [1.0, 1.0]]
  """
  if kind not in KINDS:
    raise ValueError(f"kind={kind!r} is invalid: must be one of {KINDS}")
  x, y = _observables(res, a), _observables(res, b)
  if x.shape[:-1] != y.shape[:-1]:
    raise ValueError(
      f"observables {a!r} {x.shape} and {b!r} {y.shape} differ "
      "in their (..., chains, draws) axes"
    )
  if per_chain:
    x, y = x[..., None, :, :], y[..., None, :, :]  # chain -> its own point.
    w = np.ones((1, 1, 1))
  else:
    w = _chain_weights(res, x.shape)
  num = np.sum(np.broadcast_to(w, x.shape[:-1] + (1,)), axis=(-3, -2))
  dx = (x - _pooled_mean(x, w)[..., None, None, :]) * np.sqrt(w)
  dy = (y - _pooled_mean(y, w)[..., None, None, :]) * np.sqrt(w)
  flat = lambda d: d.reshape(d.shape[:-3] + (-1, d.shape[-1]))
  with np.errstate(invalid="ignore", divide="ignore"):
    cov = np.swapaxes(flat(dx), -1, -2) @ flat(dy) / (num[..., None] - 1)
    if kind == "covariance":
      out = cov
    else:
      sx = np.sqrt(np.sum(flat(dx) ** 2, axis=-2) / (num - 1))
      sy = np.sqrt(np.sum(flat(dy) ** 2, axis=-2) / (num - 1))
      out = cov / (sx[..., :, None] * sy[..., None, :])
  return out


def susceptibility(
  restricted, full, probe: str, sampling: str = "train", center: str = "full"
) -> np.ndarray:
  """Per-example susceptibilities of a weight restriction to a probe set.

  Args:
    restricted: ``LLCResult`` of the A-restricted chains (``mask=``), with
      observables ``sampling`` and ``probe``.
    full: ``LLCResult`` of the unrestricted chains at the same points (same
      leading shape and the same losses at w*); may be ``restricted`` itself.
    probe: name of the probe set q.
    sampling: name of the recorded set the chains sample (its per-example
      mean is ``L_n``; record the whole set the chains see).
    center: ``full`` (devinterp 2.0.1: ``E_full[L_n - l_j]``) or
      ``restricted`` (``E_A[L_n - l_j]``: the covariance under A).

  Returns:
    ``(..., n_probe)`` float64 ``chi_A(j)``; average over examples for a
    probe set (e.g. those of one output class).

  Raises:
    ValueError: an unknown set or center, an observable without draws or
      examples, losses at w* that are not finite, or results at different
      points.

  Example:
    >>> import types
    >>> rng = np.random.default_rng(0)
    >>> l = 1.0 + 0.1 * rng.normal(size=(1, 1000, 3))
    >>> res = types.SimpleNamespace(
    ...     observables={"train": l[..., :2], "val": l[..., 2:]},
    ...     init_observables={"train": np.ones(2), "val": np.ones(1)},
    ...     diagnostics=types.SimpleNamespace(diverged=np.zeros(1, bool)))
    >>> susceptibility(res, res, "val").shape
    (1,)
  """
  if center not in CENTERS:
    raise ValueError(f"center={center!r} is invalid: must be one of {CENTERS}")
  lead = np.shape(restricted.diagnostics.diverged)[:-1]
  if np.shape(full.diagnostics.diverged)[:-1] != lead:
    raise ValueError(
      f"restricted and full results have leading shapes {lead} and "
      f"{np.shape(full.diagnostics.diverged)[:-1]}: not the same points"
    )
  init_a = _finite_init(restricted, sampling, "restricted")
  init_f = _finite_init(full, sampling, "full")
  if init_a.shape != init_f.shape or not np.allclose(
    init_a, init_f, rtol=1e-5, atol=1e-7
  ):
    raise ValueError(
      f"the losses of {sampling!r} at w* differ between the "
      "restricted and full results: not the same points"
    )

  def pieces(res):
    loss_n = _observables(res, sampling).mean(-1)[..., None]  # (..., C, J, 1)
    shift = loss_n - _observables(res, probe)  # L_n - l_j: (..., C, J, n_q)
    return loss_n, shift, _chain_weights(res, shift.shape)

  loss_a, shift_a, w_a = pieces(restricted)
  phi = loss_a - init_f.mean(-1)[..., None, None, None]
  e_phi_shift = _pooled_mean(phi * shift_a, w_a)
  e_phi = _pooled_mean(phi, w_a)
  if center == "full":
    _, shift_f, w_f = pieces(full)
    e_shift = _pooled_mean(shift_f, w_f)
  else:
    e_shift = _pooled_mean(shift_a, w_a)
  return e_phi_shift - e_phi * e_shift


def _finite_init(res, name: str, which: str) -> np.ndarray:
  """The losses of set ``name`` at w* of result ``which``, all finite."""
  _observables(res, name)  # the same checks and errors.
  init = np.asarray(res.init_observables[name], np.float64)
  bad = ~np.isfinite(init)
  if bad.any():
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(
      f"the losses of {name!r} at w* in the {which} result are not finite: "
      f"{int(bad.sum())} of {init.size} (the first, {float(init[first])}, at index "
      f"{first})"
    )
  return init


def effective_sample_size(res, name: str) -> np.ndarray:
  """ESS of each example's recorded loss over chains × draws, ``(..., n)``
  (``slt_jax.llc.diagnostics``, numpyro; all chains)."""
  x = _observables(res, name)
  return diagnostics.effective_sample_size(
    np.moveaxis(np.moveaxis(x, -3, 0), -2, 1)
  )


def split_rhat(res, name: str) -> np.ndarray:
  """Split R-hat of each example's recorded loss, ``(..., n)``."""
  x = _observables(res, name)
  return diagnostics.split_rhat(np.moveaxis(np.moveaxis(x, -3, 0), -2, 1))
