"""An ``LLCResult`` as xarray / ArviZ objects (``LLCResult.to_xarray`` and
``LLCResult.to_inference_data``).

xarray and arviz are optional (``pip install slt_jax[analysis]``) and are
imported here only, when an export is asked for. Sample arrays follow ArviZ's
layout: ``(chain, draw)`` first, then the point dims (``setting`` for a grid,
then the points' batch axes, named by ``dims``), then a set's example dim.
Each observable set's draws are the recorded ones: the ``draw`` coordinate
holds their draw indices (0, k, 2k, ...).

ArviZ 1.x (the ArviZverse: arviz-base/-stats/-plots; Python >= 3.12) works on
``xarray.DataTree`` and has no ``InferenceData`` class any more, so
``to_inference_data`` returns a DataTree there and an ``arviz.InferenceData``
with the same groups under arviz 0.x (the newest release installable on
Python 3.10/3.11). Groups: ``posterior`` (``loss``: the minibatch loss of
every draw), ``observables`` (one variable per set, its per-example losses),
``constant_data`` (losses at w*), ``llc`` (per-chain, mean and std of the
estimate). ArviZ's trace, rank and ESS functions take either (e.g.
``az.ess(idata.observables)`` under arviz 0.x).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def _require(module: str):
  try:
    return __import__(module)
  except ImportError as error:
    raise ImportError(
      f"{module} is needed to export results: pip install "
      "'slt_jax[analysis]' (xarray, arviz)"
    ) from error


def _point_dims(res, dims: Optional[Sequence[str]]) -> tuple:
  lead = np.shape(res.mean)
  grid = np.ndim(res.nbeta) > 0
  if dims is None:
    rest = len(lead) - grid
    return (("setting",) if grid else ()) + tuple(
      f"point_{i}" for i in range(rest)
    )
  dims = tuple(dims)
  if len(dims) != len(lead) or len(set(dims)) != len(dims):
    raise ValueError(
      f"dims={dims!r} is invalid: need {len(lead)} distinct "
      f"names for the result's leading shape {lead}"
    )
  return dims


def _chain_first(x: np.ndarray, num_lead: int, num_sample: int) -> np.ndarray:
  """Moves the ``num_sample`` axes after the ``num_lead`` leading ones to the
  front."""
  return np.moveaxis(
    x, tuple(range(num_lead, num_lead + num_sample)), tuple(range(num_sample))
  )


def _groups(res, dims: Optional[Sequence[str]]) -> dict:
  """``{group: xarray.Dataset}`` of ``res`` (see the module docstring)."""
  xr = _require("xarray")
  names = _point_dims(res, dims)
  lead = np.shape(res.mean)
  num_chains, num_draws = np.shape(res.loss_trace)[-2:]
  coords = {name: np.arange(size) for name, size in zip(names, lead)}
  coords.update(chain=np.arange(num_chains))
  posterior = xr.Dataset(
    {
      "loss": (
        ("chain", "draw") + names,
        _chain_first(np.asarray(res.loss_trace), len(lead), 2),
      )
    },
    coords={**coords, "draw": np.arange(num_draws)},
  )
  llc = {
    "llc": (
      ("chain",) + names,
      _chain_first(np.asarray(res.per_chain), len(lead), 1),
    ),
    "llc_mean": (names, np.asarray(res.mean)),
    "llc_std": (names, np.asarray(res.std)),
  }
  for field, value in res.diagnostics._asdict().items():
    value = np.asarray(value)
    if value.shape == lead:
      llc[field] = (names, value)
    else:
      llc[field] = (("chain",) + names, _chain_first(value, len(lead), 1))
  attrs = {
    "num_examples": int(res.num_examples),
    "num_moving_params": int(res.num_moving_params),
  }
  if np.ndim(res.nbeta):
    llc.update(
      {
        f: ((names[0],), np.asarray(v, np.float64))
        for f, v in res.settings._asdict().items()
      }
    )
  else:
    attrs.update({f: float(v) for f, v in res.settings._asdict().items()})
  constant = {"init_loss": (names, np.asarray(res.init_loss))}
  groups = {
    "posterior": posterior,
    "llc": xr.Dataset(llc, coords=coords, attrs=attrs),
  }
  if res.observables is not None:
    k = int(res.observe_every)
    observed, example_coords = {}, {}
    for name, value in res.observables.items():
      example = f"{name}_example"
      example_coords[example] = np.arange(np.shape(value)[-1])
      observed[name] = (
        ("chain", "draw") + names + (example,),
        _chain_first(np.asarray(value), len(lead), 2),
      )
      constant[f"init_{name}"] = (
        names + (example,),
        np.asarray(res.init_observables[name]),
      )
    num_obs = np.shape(next(iter(res.observables.values())))[-2]
    groups["observables"] = xr.Dataset(
      observed,
      coords={**coords, **example_coords, "draw": k * np.arange(num_obs)},
      attrs={"observe_every": k},
    )
    coords = {**coords, **example_coords}
  groups["constant_data"] = xr.Dataset(
    constant, coords={c: v for c, v in coords.items() if c != "chain"}
  )
  return groups


def to_xarray(res, dims: Optional[Sequence[str]] = None):
  """One ``xarray.Dataset`` of everything in ``res``.

  Variables: ``loss`` (chain, draw, *points); ``llc`` and the per-chain
  diagnostics (chain, *points); ``llc_mean``, ``llc_std``, ``init_loss`` and
  the per-point diagnostics (*points); per observable set ``loss_NAME``
  (chain, observed_draw, *points, NAME_example), whose ``observed_draw``
  coordinate holds the draw indices, and ``init_loss_NAME``.

  Args:
    res: an ``LLCResult``.
    dims: names of the result's leading axes (default ``setting`` for a
      grid, then ``point_0``, ``point_1``, ...).

  Returns:
    xarray.Dataset.
  """
  xr = _require("xarray")
  groups = _groups(res, dims)
  merged = xr.merge([groups["posterior"], groups["llc"]], combine_attrs="drop")
  if "observables" in groups:
    obs = groups["observables"].rename({"draw": "observed_draw"})
    merged = xr.merge(
      [merged, obs.rename({name: f"loss_{name}" for name in obs.data_vars})],
      combine_attrs="drop",
    )
  const = groups["constant_data"]
  merged = xr.merge(
    [
      merged,
      const.rename(
        {
          v: f"init_loss_{v[len('init_') :]}"
          for v in const.data_vars
          if v != "init_loss"
        }
      ),
    ],
    combine_attrs="drop",
  )
  merged.attrs = {
    **groups["llc"].attrs,
    **(groups["observables"].attrs if "observables" in groups else {}),
  }
  return merged


def to_inference_data(res, dims: Optional[Sequence[str]] = None):
  """``res`` in ArviZ's format (see the module docstring for the groups).

  Args:
    res: an ``LLCResult``.
    dims: names of the result's leading axes (see ``to_xarray``).

  Returns:
    ``arviz.InferenceData`` (arviz < 1) or ``xarray.DataTree`` (arviz >= 1).
  """
  xr = _require("xarray")
  az = _require("arviz")
  groups = _groups(res, dims)
  if int(az.__version__.split(".")[0]) >= 1:
    return xr.DataTree.from_dict(groups)
  return az.InferenceData(**groups)
