"""The LLC engine: every point × setting × chain of a sweep in one compiled program.

``estimate_llc`` takes any ``loss_fn(params, batch) -> scalar`` and a pytree of
parameters whose leaves carry ``batch_ndim`` leading axes (e.g. seeds ×
checkpoints). Each point gets ``num_chains`` localized chains (``sgld``,
``rmsprop_sgld``, ``sghmc``, ``sgnht`` or full-batch ``mala``); the estimate
per chain is
``nbeta (mean_draws L_B(w) - L_n(w*))`` (devinterp's estimator).

The sampler's eps, nβ and γ are traced (``SGLDSettings``), so a grid of
settings (a robustness panel, a calibration, an nβ × γ study) runs in the same
compiled program as one setting; every setting reuses the points' keys
(common random numbers). ``compile_sweep`` returns that program as an object
(``Sweep``: ``.chunk_size``, ``.memory_analysis()``, ``.run(...)``), and
``estimate_llc`` is a thin call of it. Work items (setting, point) run vmapped
in equal chunks, the chunk axis sharded over all given devices with
``jax.sharding`` (after ``slt_jax.distributed.initialize``, the devices of
every process: each computes its share and all receive the full result); on
accelerators the chunk is sized to a memory budget from
XLA's analysis of the compiled chunk (recompiled smaller only if it does not
fit), on CPU capped to a cache-friendly width. Chunk i+1 is dispatched before
chunk i is copied to the host, and each finished chunk is saved atomically to
its own file when an output folder is given, so an interrupted sweep resumes.
Diagnostics (``slt_jax.llc.diagnostics``) are computed for all points at once. The
engine never imports the model, data or training code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
import warnings
import zipfile
from typing import Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from slt_jax import batching, distributed, persist
from slt_jax.llc import diagnostics
from slt_jax.llc.config import SGLDConfig
from slt_jax.llc.diagnostics import ChainDiagnostics
from slt_jax.samplers import mala, sghmc, sgld
from slt_jax.samplers.sgld import SGLDSettings
from slt_jax.tree_types import ArrayLikeTree, ArrayTree, PRNGKey

__all__ = [
  "SGLDConfig",
  "SGLDSettings",
  "LLCResult",
  "Observe",
  "Sweep",
  "calibrate",
  "compile_sweep",
  "estimate_llc",
  "resolve_mask",
  "resolve_settings",
]

# Measured on a 2-core CPU (p=53, K=1024): throughput per chain falls once a
# chunk vmaps more than ~6 chains (the working set leaves the cache), so on CPU
# chunks are capped by chains rather than by memory.
CPU_CHAINS_PER_CHUNK = 6


class LLCResult(NamedTuple):
  """LLC estimates; ``...`` is ``(S,)`` for a grid of S settings (none
  otherwise) followed by the ``batch_ndim`` leading shape of params.

  Attributes:
    mean: (...) mean over non-diverged chains (nan if all diverged).
    std: (...) standard deviation over non-diverged chains.
    per_chain: (..., chains) per-chain estimates (diverged ones included,
      flagged in ``diagnostics.diverged``).
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


def resolve_mask(
  mask: Union[None, ArrayLikeTree, Callable], params: ArrayTree
) -> Optional[ArrayTree]:
  """Turns a mask spec into a pytree of 0/1 float arrays like ``params``.

  Args:
    mask: None (all parameters move), a pytree of booleans/arrays with the
      structure of ``params``, or a predicate ``(path: str, leaf) -> bool``
      over ``jax.tree_util.keystr`` paths (e.g. ``lambda path, _: "W" in
      path``).
    params: one point's parameters (no batch axes).

  Returns:
    None or a pytree of float32 arrays broadcastable to the leaves.

  Example:
    >>> params = {"W": jnp.ones((2, 3)), "V": jnp.ones(4)}
    >>> m = resolve_mask(lambda path, _: "W" in path, params)
    >>> float(m["W"]), float(m["V"])
    (1.0, 0.0)
  """
  if mask is None:
    return None
  if callable(mask):
    return jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.full(
        (), bool(mask(jax.tree_util.keystr(path), x)), jnp.float32
      ),
      params,
    )
  if jax.tree.structure(mask) != jax.tree.structure(params):
    raise ValueError(
      "mask must have the structure of params: got "
      f"{jax.tree.structure(mask)} vs {jax.tree.structure(params)}"
    )
  return jax.tree.map(lambda m: jnp.asarray(m, jnp.float32), mask)


def resolve_settings(
  cfg: SGLDConfig, settings: Optional[SGLDSettings], num_examples: int
) -> tuple[SGLDSettings, bool]:
  """The settings as float64 arrays of one common length S.

  Args:
    cfg: supplies every field left None (``cfg.nbeta`` resolved for
      ``num_examples`` when it is ``"default"`` or ``"n_log_n"``).
    settings: None (one setting, ``cfg``'s) or an ``SGLDSettings`` of equal
      length 1-D sequences (zipped).
    num_examples: n.

  Returns:
    (SGLDSettings of (S,) float64 arrays, whether ``settings`` was a grid).

  Raises:
    ValueError: naming a field that is not 1-D, has a different length, is
      empty, not finite or out of range (eps > 0, nβ > 0, γ >= 0).

  Example:
    >>> cfg = SGLDConfig(step_size=1e-3, nbeta=10.0, localization=1.0)
    >>> grid, is_grid = resolve_settings(cfg, SGLDSettings(step_size=[1e-4, 1e-3]), 100)
    >>> grid.localization.tolist(), is_grid
    ([1.0, 1.0], True)
  """
  base = SGLDSettings(
    cfg.step_size, cfg.resolve_nbeta(num_examples), cfg.localization
  )
  if settings is None:
    return SGLDSettings(*[np.array([v], np.float64) for v in base]), False
  if not isinstance(settings, SGLDSettings):
    raise ValueError(
      f"settings={settings!r} is invalid: must be an SGLDSettings (or None)"
    )
  given = {}
  for name, value in settings._asdict().items():
    if value is None:
      continue
    if any(isinstance(v, str) for v in np.ravel(np.asarray(value, object))):
      raise ValueError(
        f"settings.{name}={value!r} is invalid: strings such as "
        "'default' or 'n_log_n' go in SGLDConfig.nbeta only"
      )
    array = np.asarray(value, np.float64)
    if array.ndim != 1 or array.size == 0:
      raise ValueError(
        f"settings.{name}={value!r} is invalid: must be a "
        "non-empty 1-D sequence"
      )
    given[name] = array
  if not given:
    raise ValueError("settings has no field set: pass None for cfg's values")
  lengths = {name: a.size for name, a in given.items()}
  if len(set(lengths.values())) != 1:
    raise ValueError(f"settings fields differ in length: {lengths}")
  size = next(iter(lengths.values()))
  grid = SGLDSettings(
    **{
      name: given.get(name, np.full(size, getattr(base, name), np.float64))
      for name in SGLDSettings._fields
    }
  )
  for name, low, strict in (
    ("step_size", 0.0, True),
    ("nbeta", 0.0, True),
    ("localization", 0.0, False),
  ):
    values = getattr(grid, name)
    bad = ~np.isfinite(values) | ((values <= low) if strict else (values < low))
    if bad.any():
      raise ValueError(
        f"settings.{name}={values[bad][0]!r} is invalid: must be "
        f"finite and {'>' if strict else '>='} {low}"
      )
  return grid, True


# A step's kernel flags: a proxy step closes each block of ``mala_every``
# steps, the step before it records its move, the others do neither.
STEP_MODES = {
  "plain": dict(mala_proxy=False, record_move=False),
  "record": dict(mala_proxy=False, record_move=True),
  "proxy": dict(mala_proxy=True, record_move=True),
}


def _step_mode(step: int, every: int) -> str:
  """The ``STEP_MODES`` key of (static) step number ``step``."""
  residue = step % every
  if residue == every - 1:
    return "proxy"
  return "record" if residue == every - 2 else "plain"


def _sampler(loss_fn: Callable, cfg: SGLDConfig, mask: Optional[ArrayTree]):
  """``(init(anchor, data) -> state, {mode: kernel})`` for ``cfg.sampler``
  (``mode`` a ``STEP_MODES`` key)."""
  if cfg.sampler == "mala":
    kernel = mala.build_kernel(loss_fn, mask, noise=cfg.noise)
    return (
      lambda anchor, data: mala.init(anchor, loss_fn, data, mask=mask),
      dict.fromkeys(STEP_MODES, kernel),
    )
  if cfg.sampler in ("sghmc", "sgnht"):
    thermostat = cfg.sampler == "sgnht"
    friction = cfg.sgnht_diffusion if thermostat else cfg.sghmc_friction
    kernels = {
      mode: sghmc.build_kernel(
        loss_fn,
        mask,
        friction=friction,
        thermostat=thermostat,
        noise=cfg.noise,
        **flags,
      )
      for mode, flags in STEP_MODES.items()
    }
    return (
      lambda anchor, data: sghmc.init(
        anchor, thermostat=friction if thermostat else None
      ),
      kernels,
    )
  rmsprop = (
    (cfg.rmsprop_decay, cfg.rmsprop_eps)
    if cfg.sampler == "rmsprop_sgld"
    else None
  )
  kernels = {
    mode: sgld.build_kernel(
      loss_fn, mask, rmsprop=rmsprop, noise=cfg.noise, **flags
    )
    for mode, flags in STEP_MODES.items()
  }
  return (
    lambda anchor, data: sgld.init(anchor, preconditioned=rmsprop is not None),
    kernels,
  )


class Observe(NamedTuple):
  """What a sweep records besides the loss trace (static; see ``estimate_llc``).

  Attributes:
    names: the observable sets, in the caller's order.
    every: record on every ``every``-th draw (draws 0, every, 2 every, ...).
    per_example_loss_fn: ``fn(params, batch) -> (batch,)`` losses.
    batch_size: examples per evaluation of ``per_example_loss_fn`` (None:
      each set in one call).
    sizes: examples per set.
  """

  names: tuple
  every: int
  per_example_loss_fn: Callable
  batch_size: Optional[int]
  sizes: tuple


def _per_example(
  fn: Callable, params: ArrayTree, batch: ArrayTree, chunk: Optional[int]
) -> jax.Array:
  """``fn(params, batch)`` over the whole set, in chunks of ``chunk`` examples
  (the last one padded by repeating the last example) when the set is larger."""
  n = jax.tree.leaves(batch)[0].shape[0]
  if chunk is None or chunk >= n:
    return fn(params, batch)
  num = -(-n // chunk)
  idx = jnp.minimum(jnp.arange(num * chunk), n - 1).reshape(num, chunk)
  out = jax.lax.map(lambda i: fn(params, batching.take(batch, i)), idx)
  return out.reshape(-1)[:n]


def _point_fn(
  loss_fn: Callable,
  cfg: SGLDConfig,
  n: int,
  mask: Optional[ArrayTree],
  observe: Optional[Observe] = None,
) -> Callable:
  """``point(key, anchor, settings, data) -> dict`` running all chains at one
  point under one setting (``settings``: SGLDSettings of scalars).

  Steps run in blocks of ``cfg.mala_every`` aligned on multiples of it: the
  last step of a block computes the MALA proxy, the one before it records
  its move for that proxy, the others do neither (the chain is the same
  either way; ``STEP_MODES``). With ``observe``, ``data`` is ``(data,
  sets)`` and the per-example losses of every set are recorded at draws 0,
  k, 2k, ... (k = ``observe.every``): the draws run as scanned super-blocks of lcm(k,
  mala_every) steps (k-step segments, each opened by an observation), so the
  chain, its MALA proxy steps and every number it returns are those of the
  same run without observables.
  """
  init, kernels = _sampler(loss_fn, cfg, mask)
  full_batch = cfg.batch_size is None or cfg.sampler == "mala"
  num_steps = cfg.num_burnin + cfg.num_draws
  every = cfg.mala_every
  concat = lambda parts: (
    parts[0]
    if len(parts) == 1
    else jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)
  )

  def chain(
    key: PRNGKey,
    anchor: ArrayTree,
    settings: SGLDSettings,
    data: ArrayTree,
    sets: Optional[dict] = None,
  ):
    key_batches, key_steps = jax.random.split(key)

    def step(carry, t, mode: str):
      state, perm = carry
      if full_batch:
        batch = data
      else:
        perm, idx = batching.next_batch(key_batches, perm, t, n, cfg.batch_size)
        batch = batching.take(data, idx)
      state, info = kernels[mode](
        jax.random.fold_in(key_steps, t), state, batch, settings
      )
      return (state, perm), info

    def segment(carry, ts, first: int):
      """Steps ``ts`` (1-D, possibly traced), the first of them congruent to
      ``first`` mod ``every``: plain steps scanned, the others one by one."""
      modes = [_step_mode(first + i, every) for i in range(ts.shape[0])]
      parts, i = [], 0
      while i < len(modes):
        j = i + 1
        if modes[i] == "plain":
          while j < len(modes) and modes[j] == "plain":
            j += 1
          carry, infos = jax.lax.scan(
            lambda c, t: step(c, t, "plain"), carry, ts[i:j]
          )
        else:
          carry, info = step(carry, ts[i], modes[i])
          infos = jax.tree.map(lambda x: x[None], info)
        parts.append(infos)
        i = j
      return carry, concat(parts)

    def run(carry, start: int, stop: int, base=None):
      """Steps ``base + t`` for t in [start, stop) (static; ``base`` a traced
      multiple of ``every`` or None): per-step infos, stacked."""
      at = (lambda ts: ts) if base is None else (lambda ts: ts + base)
      parts = []
      first = min(-(-start // every) * every, stop)  # first aligned step.
      if first > start:  # the end of a block begun before ``start``.
        carry, infos = segment(carry, at(jnp.arange(start, first)), start)
        parts.append(infos)
      num_blocks = (stop - first) // every
      if num_blocks:
        carry, blocks = jax.lax.scan(
          lambda c, ts: segment(c, ts, 0),
          carry,
          at(
            jnp.arange(first, first + num_blocks * every).reshape(
              num_blocks, every
            )
          ),
        )
        parts.append(
          jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), blocks)
        )
      if stop > first + num_blocks * every:
        carry, rest = segment(
          carry, at(jnp.arange(first + num_blocks * every, stop)), 0
        )
        parts.append(rest)
      return carry, (concat(parts) if parts else None)

    def observed(carry, start: int, base):
      """Observes the current draw, then runs the k steps up to the next."""
      seen = {
        name: _per_example(
          observe.per_example_loss_fn,
          carry[0].position,
          sets[name],
          observe.batch_size,
        )
        for name in observe.names
      }
      carry, info = run(carry, start, start + observe.every, base)
      return carry, (info, seen)

    perm = (
      None
      if full_batch
      else batching.first_permutation(key_batches, 0, n, cfg.batch_size, n)
    )
    carry = (init(anchor, data), perm)
    if observe is None:
      carry, info = run(carry, 0, num_steps)
      seen = None
    else:
      k = observe.every
      per = math.lcm(k, every) // k  # observations per aligned super-block.
      num_obs = cfg.num_draws // k
      num_super = num_obs // per

      def super_block(carry, base):
        outs = []
        for r in range(per):
          carry, out = observed(carry, cfg.num_burnin + r * k, base)
          outs.append(out)
        return carry, (
          concat([o[0] for o in outs]),
          jax.tree.map(lambda *xs: jnp.stack(xs), *[o[1] for o in outs]),
        )

      carry, burnin = run(carry, 0, cfg.num_burnin)
      infos, seens = ([] if burnin is None else [burnin]), []
      if num_super:
        carry, (info, seen) = jax.lax.scan(
          super_block, carry, jnp.arange(num_super, dtype=jnp.int32) * per * k
        )
        infos.append(
          jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), info)
        )
        seens.append(
          jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), seen)
        )
      for r in range(num_obs % per):
        carry, (info, seen) = observed(
          carry, cfg.num_burnin + (num_super * per + r) * k, None
        )
        infos.append(info)
        seens.append(jax.tree.map(lambda x: x[None], seen))
      info, seen = concat(infos), concat(seens)
    draws = slice(cfg.num_burnin, None)
    return (
      info.loss[draws],
      jnp.nanmean(info.mala_accept[draws]),
      jnp.mean(info.distance_sq[draws]),
      seen,
    )

  def point(
    key: PRNGKey, anchor: ArrayTree, settings: SGLDSettings, data: ArrayTree
  ) -> dict:
    keys = jax.random.split(key, cfg.num_chains)
    sets = None
    if observe is not None:
      data, sets = data
    trace, accept, dist, seen = jax.vmap(chain, (0, None, None, None, None))(
      keys, anchor, settings, data, sets
    )
    out = {
      "init_loss": loss_fn(anchor, data),
      "loss_trace": trace,
      "mala_accept": accept,
      "distance_sq": dist,
    }
    if observe is not None:
      for name in observe.names:
        out[f"observables/{name}"] = seen[name]
        out[f"init_observables/{name}"] = _per_example(
          observe.per_example_loss_fn, anchor, sets[name], observe.batch_size
        )
    return out

  return point


def _resolve_observables(
  observables,
  observe_every,
  per_example_loss_fn,
  observe_batch_size,
  cfg: SGLDConfig,
  point: ArrayTree,
) -> tuple[Optional[Observe], Optional[dict]]:
  """Checks the observables arguments against one point's parameters:
  (Observe or None, {name: set} or None)."""
  if observables is None:
    return None, None
  if (
    not isinstance(observables, dict)
    or not observables
    or not all(isinstance(name, str) and name for name in observables)
  ):
    raise ValueError(
      f"observables={type(observables).__name__} is invalid: "
      "must be a non-empty dict {name: data set}, names "
      "non-empty strings"
    )
  if not callable(per_example_loss_fn):
    raise ValueError(
      "observables need per_example_loss_fn(params, batch) -> "
      f"(batch,) losses; got {per_example_loss_fn!r}"
    )
  if (
    isinstance(observe_every, bool)
    or not isinstance(observe_every, (int, np.integer))
    or observe_every < 1
  ):
    raise ValueError(
      f"observe_every={observe_every!r} is invalid: must be an integer >= 1"
    )
  if cfg.num_draws % observe_every:
    raise ValueError(
      f"observe_every={observe_every} is invalid: must divide "
      f"num_draws={cfg.num_draws}"
    )
  if observe_batch_size is not None and (
    isinstance(observe_batch_size, bool)
    or not isinstance(observe_batch_size, (int, np.integer))
    or observe_batch_size < 1
  ):
    raise ValueError(
      f"observe_batch_size={observe_batch_size!r} is invalid: "
      "must be None or an integer >= 1"
    )
  sets, sizes = {}, []
  for name, value in observables.items():
    value = jax.tree.map(jnp.asarray, value)
    try:
      sizes.append(_num_examples(value, None))
    except ValueError as error:
      raise ValueError(f"observables[{name!r}]: {error}") from None
    sets[name] = value
    try:
      shape = jax.eval_shape(per_example_loss_fn, point, value)
    except Exception as error:  # noqa: BLE001 - re-raised with the set named.
      raise ValueError(
        f"per_example_loss_fn fails on observables[{name!r}]: "
        f"{type(error).__name__}: {error}"
      ) from error
    if not isinstance(shape, jax.ShapeDtypeStruct) or shape.shape != (
      sizes[-1],
    ):
      raise ValueError(
        f"per_example_loss_fn must return one loss per example: got "
        f"{getattr(shape, 'shape', shape)} for the {sizes[-1]} examples of "
        f"observables[{name!r}]"
      )
  return Observe(
    tuple(observables),
    int(observe_every),
    per_example_loss_fn,
    None if observe_batch_size is None else int(observe_batch_size),
    tuple(sizes),
  ), sets


def _num_examples(data: ArrayTree, num_examples: Optional[int]) -> int:
  lengths = {x.shape[0] if np.ndim(x) else 0 for x in jax.tree.leaves(data)}
  if len(lengths) != 1:
    raise ValueError(
      f"data leaves disagree on the example axis: {sorted(lengths)}"
    )
  n = lengths.pop()
  if n == 0:
    raise ValueError("data is empty: the example axis has length 0")
  if num_examples is not None and (
    isinstance(num_examples, bool)
    or not isinstance(num_examples, (int, np.integer))
    or num_examples < 1
  ):
    raise ValueError(
      f"num_examples={num_examples!r} is invalid: must be an integer >= 1"
    )
  return n if num_examples is None else int(num_examples)


def _flatten_points(params: ArrayTree, batch_ndim: int):
  leaves = jax.tree.leaves(params)
  if not leaves:
    raise ValueError("params has no array leaves")
  if (
    isinstance(batch_ndim, bool)
    or not isinstance(batch_ndim, int)
    or batch_ndim < 0
    or any(np.ndim(x) < batch_ndim for x in leaves)
  ):
    raise ValueError(
      f"batch_ndim={batch_ndim!r} is invalid for leaves of "
      f"shapes {[np.shape(x) for x in leaves]}"
    )
  shapes = {np.shape(x)[:batch_ndim] for x in leaves}
  if len(shapes) != 1:
    raise ValueError(
      f"params leaves disagree on the {batch_ndim} batch axes: {sorted(shapes)}"
    )
  batch_shape = shapes.pop()
  num_points = math.prod(batch_shape)
  if num_points == 0:
    raise ValueError(f"params has no points: batch shape {batch_shape}")
  flat = jax.tree.map(
    lambda x: np.asarray(x).reshape((num_points,) + np.shape(x)[batch_ndim:]),
    params,
  )
  return flat, batch_shape, num_points


def _fingerprint(*parts) -> str:
  """sha256 over the arrays and the repr of everything else in ``parts``."""
  digest = hashlib.sha256()
  arrays, rest = [], []
  for x in jax.tree.leaves(parts):
    if isinstance(x, (np.ndarray, jax.Array)):
      arrays.append(x)
    else:
      rest.append(x)
  for x in arrays:
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    digest.update(np.ascontiguousarray(np.asarray(x)).tobytes())
  digest.update(repr((rest, jax.tree.structure(parts))).encode())
  return digest.hexdigest()


class Sweep:
  """A compiled LLC sweep for one loss, data set, configuration and model shape.

  Build it with ``compile_sweep``. ``run`` accepts any params with the point
  shape it was built for (any number of points) and any settings grid: the
  program is compiled once per chunk size, on first use.

  Attributes:
    cfg: the SGLDConfig.
    num_examples: n.
    num_moving_params: parameters the chains move.
    devices: the devices the chunk axis is sharded over.
    observe: the ``Observe`` spec of the recorded observables, or None.
  """

  def __init__(
    self,
    loss_fn: Callable,
    cfg: SGLDConfig,
    data: ArrayLikeTree,
    point: ArrayTree,
    *,
    mask=None,
    num_examples: Optional[int] = None,
    devices: Optional[Sequence[jax.Device]] = None,
    num_items: Optional[int] = None,
    observables=None,
    observe_every: int = 1,
    per_example_loss_fn=None,
    observe_batch_size: Optional[int] = None,
  ):
    if not isinstance(cfg, SGLDConfig):
      raise ValueError(f"cfg={cfg!r} is invalid: must be an SGLDConfig")
    self.cfg = cfg
    self._data = jax.tree.map(jnp.asarray, data)
    n_data = _num_examples(self._data, None)
    self.num_examples = _num_examples(self._data, num_examples)
    if cfg.batch_size is not None and cfg.batch_size > n_data:
      raise ValueError(
        f"batch_size={cfg.batch_size} is invalid: larger than "
        f"the {n_data} examples in data"
      )
    self._point = jax.tree.map(np.asarray, point)
    self._mask = resolve_mask(mask, self._point)
    self.num_moving_params = sgld.num_moving(self._point, self._mask)
    if self.num_moving_params == 0:
      raise ValueError("mask selects no parameters")
    self.observe, sets = _resolve_observables(
      observables,
      observe_every,
      per_example_loss_fn,
      observe_batch_size,
      cfg,
      self._point,
    )
    if sets is not None:  # the program's data argument: (data, sets).
      self._data = (self._data, sets)
    self._mesh = distributed.work_mesh(devices)
    self.devices = list(self._mesh.devices.flat)
    self._sharded = distributed.sharded(self._mesh)
    self._replicated = distributed.replicated(self._mesh)
    self._data = distributed.put(self._data, self._replicated)
    self._jitted = jax.jit(
      jax.vmap(
        _point_fn(loss_fn, cfg, n_data, self._mask, self.observe),
        (0, 0, 0, None),
      ),
      in_shardings=(
        self._sharded,
        self._sharded,
        self._sharded,
        self._replicated,
      ),
      out_shardings=self._sharded,
    )
    self._num_items_hint = num_items
    self._executables: dict[int, jax.stages.Compiled] = {}
    self._chunk_size: Optional[int] = None

  def _round(self, items: int) -> int:
    return distributed.padded_size(items, self._mesh)

  def _example(self, chunk: int):
    """Arguments of one chunk (zeros), placed as the program expects."""
    keys = jax.random.split(jax.random.key(0), chunk)
    anchors = jax.tree.map(
      lambda x: np.broadcast_to(x, (chunk,) + x.shape), self._point
    )
    settings = SGLDSettings(*[np.ones(chunk, np.float32)] * 3)
    return self._place(keys, anchors, settings)

  def _place(self, keys, anchors, settings):
    return distributed.put((keys, anchors, settings), self._sharded)

  def _executable(self, chunk: int) -> jax.stages.Compiled:
    if chunk not in self._executables:
      self._executables[chunk] = self._jitted.lower(
        *self._example(chunk), self._data
      ).compile()
    return self._executables[chunk]

  @property
  def chunk_size(self) -> int:
    """Work items (setting × point, each with all its chains) per chunk: a
    multiple of the device count.

    ``cfg.chunk_size`` if set; on CPU the cache-friendly cap
    (``CPU_CHAINS_PER_CHUNK`` chains per device); otherwise the number of
    items the sweep was built for, shrunk (and recompiled) only when XLA's
    memory analysis of that program exceeds ``cfg.memory_budget_bytes``.
    """
    if self._chunk_size is None:
      cfg, count = self.cfg, len(self.devices)
      if cfg.chunk_size is not None:
        chunk = self._round(cfg.chunk_size)
      elif self.devices[0].platform == "cpu":
        chunk = count * max(1, CPU_CHAINS_PER_CHUNK // cfg.num_chains)
      else:
        chunk = self._round(self._num_items_hint or count)
        while True:
          total = _memory_bytes(self._executable(chunk).memory_analysis())
          if total <= cfg.memory_budget_bytes or chunk == count:
            break
          fit = int(chunk * cfg.memory_budget_bytes / total)
          chunk = self._round(min(chunk - count, max(fit, count)))
      self._chunk_size = chunk
    return self._chunk_size

  def compiled_text(self) -> str:
    """The optimized HLO of the compiled chunk program (for profiling:
    its op names are those of a ``jax.profiler`` trace)."""
    return self._executable(self._chunk_for(self._num_items_hint)).as_text()

  def memory_analysis(self):
    """XLA's memory analysis of the compiled chunk program (argument, output
    and temporary bytes), compiling it if needed."""
    return self._executable(
      self._chunk_for(self._num_items_hint)
    ).memory_analysis()

  def _chunk_for(self, num_items: Optional[int]) -> int:
    """The chunk size a sweep of ``num_items`` uses (no padding beyond one
    chunk's worth of items)."""
    if num_items is None:
      return self.chunk_size
    return min(self.chunk_size, self._round(num_items))

  def run(
    self,
    key: PRNGKey,
    params: ArrayLikeTree,
    batch_ndim: int = 0,
    *,
    settings: Optional[SGLDSettings] = None,
    out_path: Optional[str] = None,
    progress: bool = True,
    warn: bool = True,
  ) -> LLCResult:
    """Estimates the LLC at every point of ``params`` under every setting.

    Args:
      key: PRNG key; point i uses ``split(key, P)[i]`` whatever the chunking,
        under every setting (common random numbers).
      params: pytree whose leaves carry ``batch_ndim`` leading axes of points,
        each point shaped like the one the sweep was built for.
      batch_ndim: number of leading point axes of ``params``.
      settings: None (``cfg``'s eps, nβ, γ) or an ``SGLDSettings`` grid of S
        settings (equal-length 1-D sequences, None fields from ``cfg``);
        results then carry a leading (S,) axis.
      out_path: folder where each finished chunk is saved (``part_*.npz``);
        matching parts are loaded instead of recomputed, unreadable ones are
        reported and recomputed.
      progress: show a tqdm bar over chunks.
      warn: warn about diverged chains and non-stationary points (the same
        facts are always in ``diagnostics``).

    Returns:
      LLCResult.
    """
    if out_path and os.path.isfile(out_path):
      raise ValueError(
        f"out_path={out_path!r} is a file: it must be a folder "
        "of saved chunks (the file is left as it is)"
      )
    grid, is_grid = resolve_settings(self.cfg, settings, self.num_examples)
    flat, batch_shape, num_points = _flatten_points(params, batch_ndim)
    expected = [np.shape(x) for x in jax.tree.leaves(self._point)]
    got = [np.shape(x)[1:] for x in jax.tree.leaves(flat)]
    if (
      jax.tree.structure(flat) != jax.tree.structure(self._point)
      or got != expected
    ):
      raise ValueError(
        f"params points have shapes {got}, but the sweep was "
        f"compiled for {expected}"
      )
    num_settings = grid.step_size.shape[0]
    num_items = num_settings * num_points
    chunk = self._chunk_for(num_items)
    executable = self._executable(chunk)
    num_chunks = math.ceil(num_items / chunk)
    # Item j is (setting j // P, point j % P); padding repeats the last item.
    item_ids = np.minimum(np.arange(num_chunks * chunk), num_items - 1)
    point_ids, setting_ids = item_ids % num_points, item_ids // num_points
    keys = jax.random.split(key, num_points)
    settings32 = SGLDSettings(*[v.astype(np.float32) for v in grid])
    # Observables enter only when recorded (older parts keep resuming).
    observed = (
      ()
      if self.observe is None
      else (
        repr(self.observe._replace(per_example_loss_fn=None)),
        self._data[1],
      )
    )
    fingerprint = (
      _fingerprint(
        repr(self.cfg),
        keys,
        flat,
        grid,
        self.num_examples,
        self._mask,
        chunk,
        *observed,
      )
      if out_path
      else ""
    )
    outputs: list[Optional[dict]] = [
      _load_part(out_path, i, fingerprint) if out_path else None
      for i in range(num_chunks)
    ]
    # Every process reads the saved parts (a shared file system); all must
    # then run the same chunks. Only the writer process saves.
    distributed.check_agreement(
      [o is not None for o in outputs], f"which chunks of {out_path} are saved"
    )
    bar = tqdm(
      total=num_chunks,
      initial=sum(o is not None for o in outputs),
      desc="LLC chunks",
      disable=not progress or not distributed.is_writer(),
    )

    dispatched, last_done = {}, 0.0

    def finish(i: int, pending) -> None:
      nonlocal last_done
      outputs[i] = distributed.fetch(pending)
      # Chunks run one after another: chunk i computed from its dispatch or
      # the end of the previous chunk, whichever came later.
      done = time.perf_counter()
      seconds = done - max(dispatched[i], last_done)
      last_done = done
      outputs[i]["item_seconds"] = np.full(chunk, seconds / chunk)
      if out_path and distributed.is_writer():
        persist.save_npz(
          _part_path(out_path, i),
          {"fingerprint": np.array(fingerprint), **outputs[i]},
        )
      bar.update(1)

    previous = None
    for i in [i for i, o in enumerate(outputs) if o is None]:
      part = slice(i * chunk, (i + 1) * chunk)
      dispatched[i] = time.perf_counter()
      pending = executable(
        *self._place(
          keys[point_ids[part]],
          jax.tree.map(lambda x: x[point_ids[part]], flat),
          jax.tree.map(lambda x: x[setting_ids[part]], settings32),
        ),
        self._data,
      )
      if previous is not None:
        finish(*previous)  # chunk i is already dispatched: copy i-1 meanwhile.
      previous = (i, pending)
    if previous is not None:
      finish(*previous)
    bar.close()
    if out_path:
      distributed.wait_for_writer(f"saving the chunks of {out_path}")
    for o in outputs:  # Parts saved before timing was recorded: unknown.
      o.setdefault("item_seconds", np.full(chunk, np.nan))
    out = {
      k: np.concatenate([o[k] for o in outputs])[:num_items] for k in outputs[0]
    }
    nbeta_items = grid.nbeta[np.arange(num_items) // num_points]
    lead = ((num_settings,) if is_grid else ()) + batch_shape
    return _summarize(
      out,
      self.cfg,
      nbeta_items,
      grid,
      is_grid,
      self.num_examples,
      self.num_moving_params,
      lead,
      warn,
      self.observe,
    )


def _memory_bytes(stats) -> int:
  return int(
    stats.temp_size_in_bytes
    + stats.output_size_in_bytes
    + stats.argument_size_in_bytes
  )


def _part_path(folder: str, index: int) -> str:
  return os.path.join(folder, f"part_{index:05d}.npz")


def _load_part(folder: str, index: int, fingerprint: str) -> Optional[dict]:
  """A saved chunk if it exists, is readable and matches ``fingerprint``."""
  path = _part_path(folder, index)
  if not os.path.exists(path):
    return None
  try:
    saved = persist.load_npz(path)
  except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
    warnings.warn(
      f"resume file {path} is unreadable ({error}); its chunk "
      "will be recomputed and the file replaced",
      RuntimeWarning,
      stacklevel=3,
    )
    return None
  if str(saved.pop("fingerprint", "")) != fingerprint:
    return None
  return saved


def compile_sweep(
  loss_fn: Callable,
  cfg: SGLDConfig,
  data: ArrayLikeTree,
  params: ArrayLikeTree,
  batch_ndim: int = 0,
  *,
  mask: Union[None, ArrayLikeTree, Callable] = None,
  num_examples: Optional[int] = None,
  devices: Optional[Sequence[jax.Device]] = None,
  num_settings: int = 1,
  observables: Optional[dict] = None,
  observe_every: int = 1,
  per_example_loss_fn: Optional[Callable] = None,
  observe_batch_size: Optional[int] = None,
) -> Sweep:
  """The compiled sweep for points shaped like those of ``params``.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss over a batch.
    cfg: SGLDConfig (its eps, nβ, γ are only defaults: ``run`` takes grids).
    data: pytree of arrays with the example axis first (n = its length).
    params: example points (``batch_ndim`` leading axes); fixes the point
      shape and, on accelerators, the first chunk size tried.
    batch_ndim: number of leading point axes of ``params``.
    mask: which parameters move (see ``resolve_mask``); others stay at w*.
    num_examples: n to use in place of the data length (e.g. when ``data``
      is a subset standing for a larger set); used by ``nbeta="n_log_n"``.
    devices: devices to shard the chunk axis over (default: all).
    num_settings: settings per run expected (sizes accelerator chunks).
    observables, observe_every, per_example_loss_fn, observe_batch_size:
      per-example losses to record during sampling (see ``estimate_llc``).

  Returns:
    Sweep.

  Example:
    >>> loss = lambda w, batch: 0.5 * jnp.mean(jnp.sum((batch - w[None]) ** 2, -1))
    >>> cfg = SGLDConfig(step_size=1e-3, nbeta=100.0, localization=1.0,
    ...                  num_chains=2, num_draws=50, num_burnin=10, batch_size=None)
    >>> sweep = compile_sweep(loss, cfg, jnp.zeros((100, 2)), jnp.zeros((3, 2)), 1)
    >>> grid = SGLDSettings(step_size=[5e-4, 1e-3])
    >>> res = sweep.run(jax.random.key(0), jnp.zeros((3, 2)), 1, settings=grid,
    ...                 progress=False, warn=False)
    >>> res.mean.shape, res.loss_trace.shape, sweep.chunk_size
    ((2, 3), (2, 3, 2, 50), 3)
  """
  flat, _, num_points = _flatten_points(params, batch_ndim)
  return Sweep(
    loss_fn,
    cfg,
    data,
    jax.tree.map(lambda x: x[0], flat),
    mask=mask,
    num_examples=num_examples,
    devices=devices,
    num_items=num_points * num_settings,
    observables=observables,
    observe_every=observe_every,
    per_example_loss_fn=per_example_loss_fn,
    observe_batch_size=observe_batch_size,
  )


def estimate_llc(
  key: PRNGKey,
  loss_fn: Callable,
  params: ArrayLikeTree,
  data: ArrayLikeTree,
  cfg: SGLDConfig,
  batch_ndim: int = 0,
  *,
  settings: Optional[SGLDSettings] = None,
  mask: Union[None, ArrayLikeTree, Callable] = None,
  num_examples: Optional[int] = None,
  out_path: Optional[str] = None,
  progress: bool = True,
  warn: bool = True,
  observables: Optional[dict] = None,
  observe_every: int = 1,
  per_example_loss_fn: Optional[Callable] = None,
  observe_batch_size: Optional[int] = None,
) -> LLCResult:
  """Estimates the local learning coefficient at every point of ``params``.

  A thin call of ``compile_sweep(...).run(...)``; hold the ``Sweep`` instead
  to reuse its compiled program across calls.

  With ``observables={name: data set}``, each chain also records the
  per-example losses ``per_example_loss_fn(w, set)`` of every set at draws 0,
  k, 2k, ... (k = ``observe_every``), inside the compiled chain; they come
  back as ``res.observables[name]``, shaped ``(..., chains, draws // k,
  n_name)``, with the same at w* in ``res.init_observables``
  (``slt_jax.llc.influence`` turns them into influence functions and
  susceptibilities). They cost ``points × chains × draws/k × sum(n)`` floats
  of output (counted by the accelerator chunk sizing) and one forward pass
  over every set per observation; the chains and every other number are
  those of the same run without observables, and without them the program
  is unchanged.

  Args:
    key: PRNG key; point i uses ``split(key, P)[i]`` whatever the chunking.
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss over a batch.
    params: pytree whose leaves carry ``batch_ndim`` leading axes of points.
    data: pytree of arrays with the example axis first (n = its length).
    cfg: SGLDConfig.
    batch_ndim: number of leading point axes of ``params``.
    settings: optional ``SGLDSettings`` grid (see ``Sweep.run``): results get
      a leading settings axis, all in one compiled program.
    mask: which parameters move (see ``resolve_mask``); others stay at w*.
    num_examples: n to use in place of the data length.
    out_path: folder of saved chunks for resuming (see ``Sweep.run``).
    progress: show a tqdm bar over chunks.
    warn: warn about diverged chains and non-stationary points.
    observables: None, or ``{name: data set}`` (each a pytree with the
      example axis first, like ``data``) whose per-example losses to record.
    observe_every: k >= 1 dividing ``cfg.num_draws``.
    per_example_loss_fn: ``fn(params, batch) -> (batch,)`` losses, required
      with ``observables`` (e.g. ``slt_jax.grokking.losses.make_per_example_loss``).
    observe_batch_size: evaluate each set in chunks of this many examples
      (bounds the forward pass's memory; None: a set in one call, as
      ``centered_mse``'s per-example form needs).

  Returns:
    LLCResult; diverged chains are excluded from ``mean``/``std``.

  Example:
    >>> loss = lambda w, batch: 0.5 * jnp.mean(jnp.sum((batch - w[None]) ** 2, -1))
    >>> data = jnp.zeros((100, 2))
    >>> cfg = SGLDConfig(step_size=1e-3, nbeta=100.0, localization=1.0,
    ...                  num_chains=2, num_draws=50, num_burnin=10, batch_size=None)
    >>> res = estimate_llc(jax.random.key(0), loss, jnp.zeros(2), data, cfg,
    ...                    progress=False, warn=False)
    >>> res.per_chain.shape, res.loss_trace.shape
    ((2,), (2, 50))
  """
  num_settings = (
    1
    if settings is None
    else len(
      resolve_settings(cfg, settings, _num_examples(data, num_examples))[
        0
      ].step_size
    )
  )
  sweep = compile_sweep(
    loss_fn,
    cfg,
    data,
    params,
    batch_ndim,
    mask=mask,
    num_examples=num_examples,
    num_settings=num_settings,
    observables=observables,
    observe_every=observe_every,
    per_example_loss_fn=per_example_loss_fn,
    observe_batch_size=observe_batch_size,
  )
  return sweep.run(
    key,
    params,
    batch_ndim,
    settings=settings,
    out_path=out_path,
    progress=progress,
    warn=warn,
  )


def _summarize(
  out: dict,
  cfg: SGLDConfig,
  nbeta_items: np.ndarray,
  grid: SGLDSettings,
  is_grid: bool,
  n: int,
  num_moving: int,
  lead_shape: tuple,
  warn: bool,
  observe: Optional[Observe] = None,
) -> LLCResult:
  """Host-side estimates and diagnostics from the raw chain outputs."""
  trace = out["loss_trace"].astype(np.float64)
  init_loss = out["init_loss"].astype(np.float64)
  diag = diagnostics.summarize(
    trace,
    init_loss,
    nbeta_items,
    cfg.divergence_factor * num_moving,
    out["mala_accept"],
    out["distance_sq"],
    out["item_seconds"],
    cfg.num_chains * (cfg.num_burnin + cfg.num_draws),
  )
  with np.errstate(invalid="ignore"):
    per_chain = nbeta_items[:, None] * (
      trace.mean(axis=-1) - init_loss[:, None]
    )
  good = np.where(diag.diverged, np.nan, per_chain)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-nan rows: nan.
    mean, std = np.nanmean(good, axis=1), np.nanstd(good, axis=1)
  num_diverged = int(diag.diverged.sum())
  if warn and num_diverged:
    warnings.warn(
      f"{num_diverged} of {diag.diverged.size} chains diverged "
      "(non-finite or exploding loss) and were excluded; lower "
      "step_size (see slt_jax.llc.calibrate)",
      RuntimeWarning,
      stacklevel=3,
    )
  num_drifting = int((~diag.stationary & ~diag.diverged.all(-1)).sum())
  if warn and num_drifting:
    warnings.warn(
      f"{num_drifting} of {diag.stationary.size} points are not "
      "stationary: the estimate changed between the halves of the "
      "draws; run longer chains (num_burnin/num_draws)",
      RuntimeWarning,
      stacklevel=3,
    )
  shape = lambda x: x.reshape(lead_shape + x.shape[1:])
  if is_grid:
    nbeta, settings = grid.nbeta, grid
  else:
    nbeta = float(grid.nbeta[0])
    settings = SGLDSettings(*[float(v[0]) for v in grid])
  return LLCResult(
    mean=shape(mean),
    std=shape(std),
    per_chain=shape(per_chain),
    loss_trace=shape(trace),
    init_loss=shape(init_loss),
    diagnostics=diagnostics.reshape(diag, lead_shape),
    nbeta=nbeta,
    num_examples=n,
    num_moving_params=num_moving,
    settings=settings,
    observables=None
    if observe is None
    else {name: shape(out[f"observables/{name}"]) for name in observe.names},
    init_observables=None
    if observe is None
    else {
      name: shape(out[f"init_observables/{name}"]) for name in observe.names
    },
    observe_every=None if observe is None else observe.every,
  )


def calibrate(
  key: PRNGKey,
  loss_fn: Callable,
  params: ArrayLikeTree,
  data: ArrayLikeTree,
  cfg: SGLDConfig,
  step_sizes: tuple[float, ...] = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3),
  localizations: Optional[tuple[float, ...]] = None,
  nbetas: Optional[tuple[float, ...]] = None,
  *,
  min_accept: float = 0.5,
  mask=None,
  progress: bool = False,
) -> tuple[SGLDConfig, list[dict]]:
  """Picks the largest stable step size on a small budget.

  Runs ``cfg`` (use few draws; the MALA proxy is taken on every step) at
  one point for every combination of step size × localization × nbeta, as one
  settings grid in one compiled program. Rule: among the combinations with no
  diverged chain, a finite estimate and mean MALA acceptance >= ``min_accept``
  (the discretisation is then a small perturbation of the Langevin dynamics),
  take the largest step size; ties in (gamma, nbeta) keep ``cfg``'s values
  when present, else the first listed.

  Args:
    key: PRNG key (every combination uses the same chains' keys).
    loss_fn, params, data, mask: as ``estimate_llc`` (params: one point).
    cfg: base configuration (its budget is used as is).
    step_sizes, localizations, nbetas: grids (None keeps ``cfg``'s value;
      ``cfg.nbeta`` may be ``"default"``/``"n_log_n"``, the grid's are floats).
    min_accept: acceptance threshold of the rule.
    progress: show progress bars.

  Returns:
    (chosen config, table of rows ``{step_size, localization, nbeta, llc_mean,
    llc_std, mala_accept, diverged_chains, stationary, ok}``).

  Raises:
    ValueError: if no combination is stable.
  """
  probe = dataclasses.replace(cfg, mala_every=1)
  grid = SGLDSettings.product(
    step_size=step_sizes, localization=localizations, nbeta=nbetas
  )
  res = estimate_llc(
    key,
    loss_fn,
    params,
    data,
    probe,
    settings=grid,
    mask=mask,
    progress=progress,
    warn=False,
  )
  d = res.diagnostics
  rows = []
  for i in range(len(res.mean)):
    finite = d.mala_accept[i][np.isfinite(d.mala_accept[i])]
    accept = float(finite.mean()) if finite.size else float("nan")
    diverged = int(d.diverged[i].sum())
    rows.append(
      {
        "step_size": float(res.settings.step_size[i]),
        "localization": float(res.settings.localization[i]),
        "nbeta": float(res.settings.nbeta[i]),
        "llc_mean": float(res.mean[i]),
        "llc_std": float(res.std[i]),
        "mala_accept": accept,
        "diverged_chains": diverged,
        "stationary": bool(d.stationary[i]),
        "ok": bool(
          diverged == 0 and np.isfinite(res.mean[i]) and accept >= min_accept
        ),
      }
    )
  good = [r for r in rows if r["ok"]]
  if not good:
    raise ValueError(
      f"no stable step size among {step_sizes}: every setting "
      f"diverged or had MALA acceptance < {min_accept}"
    )
  best_eps = max(r["step_size"] for r in good)
  best = [r for r in good if r["step_size"] == best_eps]
  nbeta = cfg.resolve_nbeta(res.num_examples)
  preferred = [
    r
    for r in best
    if r["localization"] == cfg.localization and np.isclose(r["nbeta"], nbeta)
  ] or best
  choice = preferred[0]
  keep_nbeta = nbetas is None
  return dataclasses.replace(
    cfg,
    step_size=choice["step_size"],
    localization=choice["localization"],
    nbeta=cfg.nbeta if keep_nbeta else choice["nbeta"],
  ), rows
