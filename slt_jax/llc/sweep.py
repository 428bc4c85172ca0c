"""``Sweep``: the chain program compiled once, run over chunks of work items.

A work item is (setting, point), all its chains included. Items run vmapped
in equal chunks, the chunk axis sharded over all given devices with
``jax.sharding`` (after ``slt_jax.distributed.initialize``, the devices of
every process: each computes its share and all receive the full result). On
accelerators the chunk is sized to a memory budget from XLA's analysis of the
compiled chunk (recompiled smaller only if it does not fit), on CPU capped to
a cache-friendly width. Chunk i+1 is dispatched before chunk i is copied to
the host, and with an output folder each finished chunk is saved atomically
as a ``slt_jax.persist.Parts`` part, so an interrupted sweep resumes.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from slt_jax import distributed, persist
from slt_jax.llc import resume
from slt_jax.llc.arguments import (
  check_point_shapes,
  count_examples,
  flatten_points,
  resolve_key,
  resolve_mask,
  resolve_observables,
  resolve_settings,
)
from slt_jax.llc.chain import COVARIANCE_OUTPUTS, point_program
from slt_jax.llc.config import SGLDConfig
from slt_jax.llc.result import LLCResult
from slt_jax.llc.summary import summarize
from slt_jax.llc.work import WorkPlan, plan_work
from slt_jax.samplers import sgld
from slt_jax.samplers.sgld import SGLDSettings
from slt_jax.tree_types import ArrayLikeTree, ArrayTree, PRNGKey

__all__ = ["CPU_CHAINS_PER_CHUNK", "Sweep", "compile_sweep"]

# Measured on a 2-core CPU (p=53, K=1024): throughput per chain falls once a
# chunk vmaps more than ~6 chains (the working set leaves the cache), so on CPU
# chunks are capped by chains rather than by memory.
CPU_CHAINS_PER_CHUNK = 6


def _memory_bytes(stats) -> int:
  return int(
    stats.temp_size_in_bytes
    + stats.output_size_in_bytes
    + stats.argument_size_in_bytes
  )


def _join_chunks(outputs: list, num_items: int) -> dict:
  """The chunks' arrays concatenated, the padding items dropped; a chunk
  saved without timings (an older layout) gets nan ``item_seconds``, one
  without the minibatch noise at w* a noise of 0 (the plain divergence
  rule), one without ``step_scale`` nan there; the covariance blocks are
  nan when any chunk lacks them."""
  names = COVARIANCE_OUTPUTS.items()
  complete = all(name in o for o in outputs for _, name in names)
  for o in outputs:
    o.setdefault("item_seconds", np.full(len(o["init_loss"]), np.nan))
    o.setdefault("init_batch_loss_std", np.zeros(len(o["init_loss"])))
    o.setdefault("step_scale", np.full(o["distance_sq"].shape, np.nan))
    for k, name in () if complete else names:
      tail = () if k == "cov" else (1,)  # one nan block.
      o[name] = np.full(o["distance_sq"].shape + tail, np.nan)
  return {
    k: np.concatenate([o[k] for o in outputs])[:num_items] for k in outputs[0]
  }


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
    observe: the ``ObservablesSpec`` of the recorded observables, or None.
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
    data = jax.tree.map(jnp.asarray, data)
    n_data = count_examples(data, None)
    self.num_examples = count_examples(data, num_examples)
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
    self.observe, sets = resolve_observables(
      observables,
      observe_every,
      per_example_loss_fn,
      observe_batch_size,
      cfg,
      self._point,
    )
    if sets is not None:  # the program's data argument: (data, sets).
      data = (data, sets)
    self._mesh = distributed.work_mesh(devices)
    self.devices = list(self._mesh.devices.flat)
    self._sharded = distributed.sharded(self._mesh)
    self._replicated = distributed.replicated(self._mesh)
    self._data = distributed.put(data, self._replicated)
    self._digest: Optional[dict] = None
    program = point_program(loss_fn, cfg, n_data, self._mask, self.observe)
    self._jitted = jax.jit(
      jax.vmap(program, (0, 0, 0, None)),
      in_shardings=(self._sharded,) * 3 + (self._replicated,),
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

  def _data_digest(self) -> dict:
    """``resume.tree_digest`` of the data (and observable sets), computed
    once."""
    if self._digest is None:
      self._digest = resume.tree_digest(distributed.fetch(self._data))
    return self._digest

  def _collect(self, in_flight: tuple, last_done: float, outputs, parts):
    """Copies the chunk ``in_flight`` = (index, pending outputs, dispatch
    time) to ``outputs[index]``, with its ``item_seconds`` (the time from its
    dispatch, or from the end of the previous chunk if later, shared by its
    items), and saves it into ``parts`` (writer only).

    Returns:
      When the chunk was done (``time.perf_counter``).
    """
    index, pending, dispatched = in_flight
    outputs[index] = distributed.fetch(pending)
    done = time.perf_counter()
    chunk = len(outputs[index]["init_loss"])
    seconds = done - max(dispatched, last_done)
    outputs[index]["item_seconds"] = np.full(chunk, seconds / chunk)
    if parts is not None and distributed.is_writer():
      parts.save(index, outputs[index])
    return done

  def _compute(
    self,
    plan: WorkPlan,
    outputs: list,
    parts: Optional[persist.Parts],
    progress: bool,
  ) -> None:
    """Fills the missing ``outputs`` chunk by chunk; chunk i+1 is
    dispatched before chunk i is copied to the host."""
    executable = self._executable(plan.chunk)
    todo = [i for i, o in enumerate(outputs) if o is None]
    bar = tqdm(
      total=plan.num_chunks,
      initial=plan.num_chunks - len(todo),
      desc="LLC chunks",
      disable=not progress or not distributed.is_writer(),
    )
    in_flight, last_done = None, 0.0
    for i in todo:
      dispatched = time.perf_counter()
      pending = executable(*self._place(*plan.chunk_arguments(i)), self._data)
      if in_flight is not None:
        last_done = self._collect(in_flight, last_done, outputs, parts)
        bar.update(1)
      in_flight = (i, pending, dispatched)
    if in_flight is not None:
      self._collect(in_flight, last_done, outputs, parts)
      bar.update(1)
    bar.close()

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
      key: PRNG key, ``jax.random.key(seed)`` (a legacy
        ``jax.random.PRNGKey(seed)`` gives the same numbers); point i uses
        ``split(key, P)[i]`` whatever the chunking, under every setting
        (common random numbers).
      params: pytree whose leaves carry ``batch_ndim`` leading axes of points,
        each point shaped like the one the sweep was built for.
      batch_ndim: number of leading point axes of ``params``.
      settings: None (``cfg``'s eps, nβ, γ) or an ``SGLDSettings`` grid of S
        settings (equal-length 1-D sequences, None fields from ``cfg``);
        results then carry a leading (S,) axis.
      out_path: folder of this sweep's ``persist.Parts`` (``part_*.npz``,
        one per finished chunk, and ``owner.json``); saved parts are loaded
        instead of recomputed.
      progress: show a tqdm bar over chunks.
      warn: warn about diverged or stuck chains, non-stationary points
        and a noiseless run (the same facts are always in the result).

    Returns:
      LLCResult.

    Raises:
      TypeError: if ``key`` is not a PRNG key.
      ValueError: for a bad argument; if ``out_path`` is a file, or a folder
        holding the parts of another computation (see
        ``resume.sweep_fingerprint``), or holds an unreadable part (each
        named).
    """
    key = resolve_key(key)
    grid, is_grid = resolve_settings(self.cfg, settings, self.num_examples)
    flat, batch_shape, num_points = flatten_points(params, batch_ndim)
    check_point_shapes(flat, self._point)
    chunk = self._chunk_for(grid.step_size.shape[0] * num_points)
    plan = plan_work(key, flat, grid, chunk)
    parts = None
    outputs = [None] * plan.num_chunks
    if out_path:
      fingerprint = resume.sweep_fingerprint(
        self.cfg, plan, grid, self._mask, self._data_digest(), self.observe
      )
      parts = persist.Parts(out_path, fingerprint)
      outputs = resume.load_parts(parts, plan.num_chunks)
    self._compute(plan, outputs, parts, progress)
    if parts is not None:
      distributed.wait_for_writer(f"saving the chunks of {out_path}")
    out = _join_chunks(outputs, plan.num_items)
    lead = ((len(grid.step_size),) if is_grid else ()) + batch_shape
    return summarize(
      out,
      self.cfg,
      grid,
      is_grid,
      lead,
      self.num_examples,
      self.num_moving_params,
      warn,
      self.observe,
    )


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
  flat, _, num_points = flatten_points(params, batch_ndim)
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
