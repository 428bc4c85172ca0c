"""The LLC engine: every point × chain of a sweep in one compiled program.

``estimate_llc`` takes any ``loss_fn(params, batch) -> scalar`` and a pytree of
parameters whose leaves carry ``batch_ndim`` leading axes (e.g. seeds ×
checkpoints). Each point gets ``num_chains`` localized chains (``sgld``,
``rmsprop_sgld`` or full-batch ``mala``); the estimate per chain is
``nbeta (mean_draws L_B(w) - L_n(w*))`` (devinterp's estimator). Points run
vmapped in equal chunks of one jitted program (sized to a memory budget from
XLA's own memory analysis), the chunk axis sharded over all visible devices
with ``jax.sharding``. A chunk's results are saved atomically when an output
path is given, and an interrupted sweep resumes from them. The engine never
imports the model, data or training code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import warnings
from typing import Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from slt_jax import batching, diagnostics, io, mala, sgld
from slt_jax.config import SGLDConfig
from slt_jax.diagnostics import ChainDiagnostics
from slt_jax.types import ArrayLikeTree, ArrayTree, PRNGKey

__all__ = ["SGLDConfig", "LLCResult", "calibrate", "estimate_llc", "resolve_mask"]


class LLCResult(NamedTuple):
  """LLC estimates; ``...`` is the ``batch_ndim`` leading shape of params.

  Attributes:
    mean: (...) mean over non-diverged chains (nan if all diverged).
    std: (...) standard deviation over non-diverged chains.
    per_chain: (..., chains) per-chain estimates (diverged ones included,
      flagged in ``diagnostics.diverged``).
    loss_trace: (..., chains, draws) minibatch losses of the draws.
    init_loss: (...) L_n(w*) on the full data.
    diagnostics: ChainDiagnostics.
    nbeta: the n·beta used.
    num_examples: n.
    num_moving_params: parameters the chains move (after the mask).
  """

  mean: np.ndarray
  std: np.ndarray
  per_chain: np.ndarray
  loss_trace: np.ndarray
  init_loss: np.ndarray
  diagnostics: ChainDiagnostics
  nbeta: float
  num_examples: int
  num_moving_params: int


def resolve_mask(mask: Union[None, ArrayLikeTree, Callable], params: ArrayTree
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
  """
  if mask is None:
    return None
  if callable(mask):
    return jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.full((), bool(mask(jax.tree_util.keystr(path), x)),
                                 jnp.float32), params)
  if jax.tree.structure(mask) != jax.tree.structure(params):
    raise ValueError("mask must have the structure of params: got "
                     f"{jax.tree.structure(mask)} vs {jax.tree.structure(params)}")
  return jax.tree.map(lambda m: jnp.asarray(m, jnp.float32), mask)


def _build_kernel(loss_fn: Callable, cfg: SGLDConfig, nbeta: float,
                  mask: Optional[ArrayTree], mala_proxy: bool) -> Callable:
  if cfg.sampler == "mala":
    return mala.build_kernel(loss_fn, cfg.step_size, nbeta, cfg.localization,
                             mask, noise=cfg.noise)
  rmsprop = ((cfg.rmsprop_decay, cfg.rmsprop_eps)
             if cfg.sampler == "rmsprop_sgld" else None)
  return sgld.build_kernel(loss_fn, cfg.step_size, nbeta, cfg.localization,
                           mask, rmsprop=rmsprop, noise=cfg.noise,
                           mala_proxy=mala_proxy)


def _point_fn(loss_fn: Callable, cfg: SGLDConfig, nbeta: float, n: int,
              mask: Optional[ArrayTree]) -> Callable:
  """``point(key, anchor, data) -> dict`` running all chains at one point.

  Steps run in blocks of ``cfg.mala_every``: the last step of a block computes
  the MALA proxy, the others skip it (the state is the same either way).
  """
  kernels = {proxy: _build_kernel(loss_fn, cfg, nbeta, mask, proxy)
             for proxy in (False, True)}
  full_batch = cfg.batch_size is None or cfg.sampler == "mala"
  num_steps = cfg.num_burnin + cfg.num_draws
  every = cfg.mala_every
  num_blocks = num_steps // every

  def chain(key: PRNGKey, anchor: ArrayTree, data: ArrayTree):
    key_batches, key_steps = jax.random.split(key)

    def step(carry, t, proxy: bool):
      state, perm = carry
      if full_batch:
        batch = data
      else:
        perm, idx = batching.next_batch(key_batches, perm, t, n, cfg.batch_size)
        batch = batching.take(data, idx)
      state, info = kernels[proxy](jax.random.fold_in(key_steps, t), state,
                                   batch)
      return (state, perm), info

    def plain_step(carry, t):
      return step(carry, t, False)

    def block(carry, ts):
      carry, infos = jax.lax.scan(plain_step, carry, ts[:-1])
      carry, last = step(carry, ts[-1], True)
      return carry, jax.tree.map(
          lambda x, y: jnp.concatenate([x, y[None]]), infos, last)

    perm = (None if full_batch else batching.first_permutation(
        key_batches, 0, n, cfg.batch_size, n))
    carry = (sgld.init(anchor), perm)
    carry, blocks = jax.lax.scan(
        block, carry, jnp.arange(num_blocks * every).reshape(num_blocks, every))
    info = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), blocks)
    if num_steps % every:
      _, rest = jax.lax.scan(plain_step, carry,
                             jnp.arange(num_blocks * every, num_steps))
      info = jax.tree.map(lambda x, y: jnp.concatenate([x, y]), info, rest)
    draws = slice(cfg.num_burnin, None)
    return (info.loss[draws], jnp.nanmean(info.mala_accept[draws]),
            jnp.mean(info.distance_sq[draws]))

  def point(key: PRNGKey, anchor: ArrayTree, data: ArrayTree) -> dict:
    keys = jax.random.split(key, cfg.num_chains)
    trace, accept, dist = jax.vmap(chain, (0, None, None))(keys, anchor, data)
    return {"init_loss": loss_fn(anchor, data), "loss_trace": trace,
            "mala_accept": accept, "distance_sq": dist}

  return point


def _num_examples(data: ArrayTree, num_examples: Optional[int]) -> int:
  lengths = {x.shape[0] if np.ndim(x) else 0 for x in jax.tree.leaves(data)}
  if len(lengths) != 1:
    raise ValueError(f"data leaves disagree on the example axis: {sorted(lengths)}")
  n = lengths.pop()
  if n == 0:
    raise ValueError("data is empty: the example axis has length 0")
  if num_examples is not None and num_examples < 1:
    raise ValueError(f"num_examples={num_examples!r} is invalid: must be >= 1")
  return n if num_examples is None else num_examples


def _flatten_points(params: ArrayTree, batch_ndim: int):
  leaves = jax.tree.leaves(params)
  if not leaves:
    raise ValueError("params has no array leaves")
  if batch_ndim < 0 or any(np.ndim(x) < batch_ndim for x in leaves):
    raise ValueError(f"batch_ndim={batch_ndim!r} is invalid for leaves of "
                     f"shapes {[np.shape(x) for x in leaves]}")
  shapes = {np.shape(x)[:batch_ndim] for x in leaves}
  if len(shapes) != 1:
    raise ValueError(f"params leaves disagree on the {batch_ndim} batch axes: "
                     f"{sorted(shapes)}")
  batch_shape = shapes.pop()
  num_points = math.prod(batch_shape)
  flat = jax.tree.map(
      lambda x: np.asarray(x).reshape((num_points,) + np.shape(x)[batch_ndim:]),
      params)
  return flat, batch_shape, num_points


def _fingerprint(cfg: SGLDConfig, key: PRNGKey, flat: ArrayTree, n: int,
                 nbeta: float, mask: Optional[ArrayTree]) -> str:
  digest = hashlib.sha256()
  for x in jax.tree.leaves((flat, mask)):
    digest.update(np.ascontiguousarray(np.asarray(x)).tobytes())
  digest.update(repr((cfg, n, nbeta, jax.tree.structure(flat),
                      np.asarray(jax.random.key_data(key)).tolist())).encode())
  return digest.hexdigest()


# Measured on a 2-core CPU (p=53, K=1024): throughput per chain falls once a
# chunk vmaps more than ~6 chains (the working set leaves the cache), so on CPU
# chunks are capped by chains rather than by memory.
CPU_CHAINS_PER_CHUNK = 6

_PROGRAMS: dict = {}


def _program(loss_fn: Callable, cfg: SGLDConfig, nbeta: float, n_data: int,
             mask_tree: Optional[ArrayTree], mesh: Mesh):
  """The jitted sweep program, cached across calls with the same setup."""
  mask_key = None if mask_tree is None else (
      jax.tree.structure(mask_tree),
      tuple(np.asarray(m).tobytes() for m in jax.tree.leaves(mask_tree)))
  # Settings that only steer the host loop or the summary do not recompile.
  traced_cfg = dataclasses.replace(cfg, chunk_size=None,
                                   memory_budget_bytes=1,
                                   divergence_factor=1.0)
  key = (loss_fn, traced_cfg, nbeta, n_data, mask_key,
         tuple(mesh.devices.flat))
  if key not in _PROGRAMS:
    sharded = NamedSharding(mesh, PartitionSpec("points"))
    replicated = NamedSharding(mesh, PartitionSpec())
    _PROGRAMS[key] = jax.jit(
        jax.vmap(_point_fn(loss_fn, cfg, nbeta, n_data, mask_tree), (0, 0, None)),
        in_shardings=(sharded, sharded, replicated), out_shardings=sharded)
  return _PROGRAMS[key]


def _auto_chunk_size(program, keys, flat, data, cfg: SGLDConfig,
                     num_points: int, num_devices: int) -> int:
  """Points per chunk: ``cfg.chunk_size``, else the CPU cap, else the largest
  chunk whose peak memory (XLA's analysis of a one-point-per-device program)
  fits ``cfg.memory_budget_bytes``; a multiple of the device count."""
  if cfg.chunk_size is not None:
    chunk = cfg.chunk_size
  elif jax.default_backend() == "cpu":
    chunk = num_devices * max(1, CPU_CHAINS_PER_CHUNK // cfg.num_chains)
  else:
    one = jax.tree.map(lambda x: x[:num_devices], (keys, flat))
    stats = program.lower(*one, data).compile().memory_analysis()
    per_point = max(1, (stats.temp_size_in_bytes + stats.output_size_in_bytes
                        + stats.argument_size_in_bytes) // num_devices)
    chunk = max(1, cfg.memory_budget_bytes // per_point)
  chunk = min(chunk, num_points)
  return num_devices * math.ceil(chunk / num_devices)


def estimate_llc(key: PRNGKey, loss_fn: Callable, params: ArrayLikeTree,
                 data: ArrayLikeTree, cfg: SGLDConfig, batch_ndim: int = 0, *,
                 mask: Union[None, ArrayLikeTree, Callable] = None,
                 num_examples: Optional[int] = None,
                 out_path: Optional[str] = None,
                 progress: bool = True) -> LLCResult:
  """Estimates the local learning coefficient at every point of ``params``.

  Args:
    key: PRNG key; point i uses ``split(key, P)[i]`` whatever the chunking.
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss over a batch.
    params: pytree whose leaves carry ``batch_ndim`` leading axes of points.
    data: pytree of arrays with the example axis first (n = its length).
    cfg: SGLDConfig.
    batch_ndim: number of leading point axes of ``params``.
    mask: which parameters move (see ``resolve_mask``); others stay at w*.
    num_examples: n to use in place of the data length (e.g. when ``data``
      is a subset standing for a larger set); used by ``nbeta="n_log_n"``.
    out_path: ``.npz`` file where finished chunks are saved; a matching file
      is resumed.
    progress: show a tqdm bar over chunks.

  Returns:
    LLCResult; diverged chains are excluded from ``mean``/``std`` and a
    warning names how many, as it does for non-stationary points.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> loss = lambda w, batch: 0.5 * jnp.mean(jnp.sum((batch - w) ** 2, -1))
    >>> data = jnp.zeros((100, 2))
    >>> cfg = SGLDConfig(step_size=1e-3, nbeta=100.0, localization=1.0,
    ...                  num_chains=2, num_draws=50, num_burnin=10, batch_size=None)
    >>> res = estimate_llc(jax.random.key(0), loss, jnp.zeros(2), data, cfg,
    ...                    progress=False)
    >>> res.per_chain.shape, res.loss_trace.shape
    ((2,), (2, 50))
  """
  data = jax.tree.map(jnp.asarray, data)
  n_data = _num_examples(data, None)
  n = _num_examples(data, num_examples)
  if cfg.batch_size is not None and cfg.batch_size > n_data:
    raise ValueError(f"batch_size={cfg.batch_size} is invalid: larger than the "
                     f"{n_data} examples in data")
  nbeta = cfg.resolve_nbeta(n)
  flat, batch_shape, num_points = _flatten_points(params, batch_ndim)
  one_point = jax.tree.map(lambda x: x[0], flat)
  mask_tree = resolve_mask(mask, one_point)
  num_moving = (sum(int(np.size(x)) for x in jax.tree.leaves(one_point))
                if mask_tree is None else
                int(sum(np.sum(np.broadcast_to(m, np.shape(x)))
                        for m, x in zip(jax.tree.leaves(mask_tree),
                                        jax.tree.leaves(one_point)))))
  if num_moving == 0:
    raise ValueError("mask selects no parameters")

  devices = jax.devices()
  mesh = Mesh(np.array(devices), ("points",))
  program = _program(loss_fn, cfg, nbeta, n_data, mask_tree, mesh)
  keys = jax.random.split(key, num_points)
  chunk = _auto_chunk_size(program, keys, flat, data, cfg, num_points,
                           len(devices))
  num_chunks = math.ceil(num_points / chunk)
  pad = num_chunks * chunk - num_points
  padded = jax.tree.map(
      lambda x: np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]), flat)
  keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], pad, axis=0)])

  fingerprint = _fingerprint(cfg, key, flat, n, nbeta, mask_tree) if out_path else ""
  outputs: list[dict] = []
  if out_path and os.path.exists(out_path):
    saved = io.load_npz(out_path)
    if str(saved["fingerprint"]) == fingerprint and int(saved["chunk"]) == chunk:
      names = [k for k in saved if k not in ("fingerprint", "chunk")]
      outputs = [{k: saved[k][i * chunk:(i + 1) * chunk] for k in names}
                 for i in range(saved[names[0]].shape[0] // chunk)]
  bar = tqdm(total=num_chunks, initial=len(outputs), desc="LLC chunks",
             disable=not progress)
  for i in range(len(outputs), num_chunks):
    part = slice(i * chunk, (i + 1) * chunk)
    out = program(keys[part], jax.tree.map(lambda x: x[part], padded), data)
    outputs.append(jax.tree.map(np.asarray, out))
    if out_path:
      joined = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
      io.save_npz(out_path, {"fingerprint": np.array(fingerprint),
                             "chunk": np.array(chunk), **joined})
    bar.update(1)
  bar.close()
  out = {k: np.concatenate([o[k] for o in outputs])[:num_points]
         for k in outputs[0]}
  return _summarize(out, cfg, nbeta, n, num_moving, batch_shape)


def _summarize(out: dict, cfg: SGLDConfig, nbeta: float, n: int,
               num_moving: int, batch_shape: tuple) -> LLCResult:
  """Host-side estimates and diagnostics from the raw chain outputs."""
  trace = out["loss_trace"].astype(np.float64)
  init_loss = out["init_loss"].astype(np.float64)
  threshold = cfg.divergence_factor * num_moving
  points = [diagnostics.summarize_point(trace[i], init_loss[i], nbeta,
                                        threshold, out["mala_accept"][i],
                                        out["distance_sq"][i])
            for i in range(trace.shape[0])]
  diag = diagnostics.stack(points, batch_shape)
  with np.errstate(invalid="ignore"):
    per_chain = nbeta * (trace.mean(axis=-1) - init_loss[:, None])
  good = np.where(diag.diverged.reshape(per_chain.shape), np.nan, per_chain)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    mean, std = np.nanmean(good, axis=1), np.nanstd(good, axis=1)
  num_diverged = int(diag.diverged.sum())
  if num_diverged:
    warnings.warn(f"{num_diverged} of {diag.diverged.size} chains diverged "
                  "(non-finite or exploding loss) and were excluded; lower "
                  "step_size (see slt_jax.llc calibration)", RuntimeWarning)
  num_drifting = int((~diag.stationary).sum())
  if num_drifting:
    warnings.warn(f"{num_drifting} of {diag.stationary.size} points are not "
                  "stationary: the estimate changed between the halves of the "
                  "draws; run longer chains (num_burnin/num_draws)",
                  RuntimeWarning)
  shape = lambda x: x.reshape(batch_shape + x.shape[1:])
  return LLCResult(mean=shape(mean), std=shape(std), per_chain=shape(per_chain),
                   loss_trace=shape(trace), init_loss=shape(init_loss),
                   diagnostics=diag, nbeta=nbeta, num_examples=n,
                   num_moving_params=num_moving)


def calibrate(key: PRNGKey, loss_fn: Callable, params: ArrayLikeTree,
              data: ArrayLikeTree, cfg: SGLDConfig,
              step_sizes: tuple[float, ...] = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3),
              localizations: Optional[tuple[float, ...]] = None,
              nbetas: Optional[tuple[float, ...]] = None, *,
              min_accept: float = 0.5, mask=None,
              progress: bool = False) -> tuple[SGLDConfig, list[dict]]:
  """Picks the largest stable step size on a small budget.

  Runs ``cfg`` (use few draws; the MALA proxy is taken on every step) at
  one point for every combination of step size × localization × nbeta. Rule:
  among the combinations with no diverged chain, a finite estimate and mean
  MALA acceptance >= ``min_accept`` (the discretisation is then a small
  perturbation of the Langevin dynamics), take the largest step size; ties in
  (gamma, nbeta) keep ``cfg``'s values when present, else the first listed.

  Args:
    key: PRNG key.
    loss_fn, params, data, mask: as ``estimate_llc`` (params: one point).
    cfg: base configuration (its budget is used as is).
    step_sizes, localizations, nbetas: grids (None keeps ``cfg``'s value).
    min_accept: acceptance threshold of the rule.
    progress: show progress bars.

  Returns:
    (chosen config, table of rows ``{step_size, localization, nbeta, llc_mean,
    llc_std, mala_accept, diverged_chains, stationary, ok}``).

  Raises:
    ValueError: if no combination is stable.
  """
  rows, keys = [], iter(jax.random.split(key, 1000))
  for gamma in localizations or (cfg.localization,):
    for nbeta in nbetas or (cfg.nbeta,):
      for eps in step_sizes:
        trial = dataclasses.replace(cfg, step_size=eps, localization=gamma,
                                    nbeta=nbeta, mala_every=1)
        with warnings.catch_warnings():
          warnings.simplefilter("ignore", RuntimeWarning)
          res = estimate_llc(next(keys), loss_fn, params, data, trial,
                             mask=mask, progress=progress)
          accept = float(np.nanmean(res.diagnostics.mala_accept))
        diverged = int(res.diagnostics.diverged.sum())
        rows.append({"step_size": eps, "localization": gamma, "nbeta": nbeta,
                     "llc_mean": float(res.mean), "llc_std": float(res.std),
                     "mala_accept": accept, "diverged_chains": diverged,
                     "stationary": bool(res.diagnostics.stationary),
                     "ok": bool(diverged == 0 and np.isfinite(res.mean)
                                and accept >= min_accept)})
  good = [r for r in rows if r["ok"]]
  if not good:
    raise ValueError(f"no stable step size among {step_sizes}: every setting "
                     f"diverged or had MALA acceptance < {min_accept}")
  best_eps = max(r["step_size"] for r in good)
  best = [r for r in good if r["step_size"] == best_eps]
  preferred = [r for r in best if r["localization"] == cfg.localization
               and r["nbeta"] == cfg.nbeta] or best
  choice = preferred[0]
  return dataclasses.replace(cfg, step_size=choice["step_size"],
                             localization=choice["localization"],
                             nbeta=choice["nbeta"]), rows
