"""``LLCResult``: the estimates, traces and diagnostics of one sweep."""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import numpy as np

from slt_jax.llc.diagnostics import ChainDiagnostics
from slt_jax.samplers.sgld import SGLDSettings

__all__ = ["LLCResult"]


class LLCResult(NamedTuple):
  """LLC estimates; ``...`` is ``(S,)`` for a grid of S settings (none
  otherwise) followed by the ``batch_ndim`` leading shape of params.

  Attributes:
    mean: (...) mean over non-diverged chains (nan if all diverged).
    std: (...) standard deviation over non-diverged chains.
    per_chain: (..., chains) per-chain estimates (diverged ones included,
      flagged in ``diagnostics.diverged``, which also flags ``stuck``
      chains).
    loss_trace: (..., chains, draws) minibatch losses of the draws.
    init_loss: (...) L_n(w*) on the full data.
    diagnostics: ChainDiagnostics, each field shaped (...) or (..., chains).
    nbeta: the n·beta used: a float, or (S,) for a grid.
    num_examples: n.
    num_moving_params: parameters the chains move (after the mask).
    settings: the ``SGLDSettings`` used (floats, or (S,) arrays for a grid).
    observables: None, or ``{name: (..., chains, draws // k, n_name)}``: the
      per-example losses of each observable set at draws 0, k, 2k, ... (k =
      ``observe_every``; see ``estimate_llc``), for ``slt_jax.llc.influence``.
    init_observables: None, or ``{name: (..., n_name)}``: the same at w*.
    observe_every: k, or None without observables.
    stuck: (..., chains) bool, chains that did not move (constant loss or
      never away from w*: e.g. MALA rejecting every proposal), excluded
      from the estimate like diverged ones; None only if built by hand.
    noiseless: True for ``SGLDConfig(noise="zeros")``: the chains inject no
      noise and the estimate is not an LLC (a benchmark ablation).
  """

  mean: np.ndarray
  std: np.ndarray
  per_chain: np.ndarray
  loss_trace: np.ndarray
  init_loss: np.ndarray
  diagnostics: ChainDiagnostics
  nbeta: Union[float, np.ndarray]
  num_examples: int
  num_moving_params: int
  settings: SGLDSettings
  observables: Optional[dict] = None
  init_observables: Optional[dict] = None
  observe_every: Optional[int] = None
  stuck: Optional[np.ndarray] = None
  noiseless: bool = False

  def to_xarray(self, dims: Optional[Sequence[str]] = None):
    """The result as an ``xarray.Dataset`` (needs ``pip install
    slt_jax[analysis]``); see ``slt_jax.llc.export.to_xarray``."""
    from slt_jax.llc import export

    return export.to_xarray(self, dims)

  def to_inference_data(self, dims: Optional[Sequence[str]] = None):
    """The result in ArviZ's format: ``arviz.InferenceData`` (arviz < 1) or an
    ``xarray.DataTree`` (arviz >= 1); see ``slt_jax.llc.export``."""
    from slt_jax.llc import export

    return export.to_inference_data(self, dims)
