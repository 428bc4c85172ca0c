"""Training many runs of any model as one compiled program.

``train_models`` vmaps one run's loop (``slt_jax.training.loop``) over seeds
× a grid of (lr, weight decay, train size); the hyperparameters are traced
arrays, so the grid compiles once (a train size shared by all runs is static
instead, which keeps the minibatch shuffle to one sort per epoch). Each chunk
is one call of the compiled program; the next chunk is dispatched before the
previous one's outputs are copied to the host, so showing progress and saving
overlap the computation. Given ``out_dir``, an interrupted call resumes where
it stopped (``slt_jax.training.resume``), bit-identically.

Early stopping (``LoopConfig.stop_metric``) is per run: at each check the
run's metric updates a streak; once the rule fires, that run's parameters and
optimizer state freeze (its steps are still computed, then discarded) while
the other runs go on, and the loop ends after the chunk in which the last run
stopped.
"""

from __future__ import annotations

import time
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from slt_jax import distributed
from slt_jax.checks import check, is_int
from slt_jax.training import grid as grid_lib
from slt_jax.training import loop
from slt_jax.training.config import LoopConfig
from slt_jax.training.loop import RunHParams, StopState, Task, TrainState
from slt_jax.training.resume import (
  RESERVED_SPEC_KEYS,
  Resume,
  setup_fingerprint,
)
from slt_jax.tree_types import ArrayTree, PRNGKey

__all__ = ["TrainResult", "Runs", "train_models"]


class TrainResult(NamedTuple):
  """Outcome of a training call for R runs (R = seeds × grid points,
  seed-major).

  Attributes:
    checkpoints: params stacked (R, C, ...), taken after steps ``ckpt_steps``.
    ckpt_steps: (C,) steps of the checkpoints.
    log_steps: (L,) steps of the logged metrics (step 0 included).
    metrics: name -> (R, L) for the task's metrics.
    hparams: ``lr``, ``weight_decay``, ``num_train``, ``seed`` -> (R,).
    final_params: params (R, ...) after the last step (for a run that
      stopped early: at its stop step, since its parameters froze there).
    steps_per_second: optimisation steps per second summed over runs
      (stopped runs included: their steps are computed, then discarded),
      measured from the end of the first chunk of this call to the end of
      the last (compile excluded; nan if only one chunk ran in this call).
    stop_step: (R,) int, the step at which each run's early-stopping rule
      fired, -1 where it never did (always -1 without a rule).
      After its stop a run is frozen: its later checkpoints repeat the
      parameters at ``stop_step`` and its later metrics repeat the values
      logged there (they are evaluated on the frozen parameters).
  """

  checkpoints: ArrayTree
  ckpt_steps: np.ndarray
  log_steps: np.ndarray
  metrics: dict
  hparams: dict
  final_params: ArrayTree
  steps_per_second: float
  stop_step: np.ndarray

  @property
  def stop_params(self) -> ArrayTree:
    """Params (R, ...) at each run's stop step (the grokking authors' final
    checkpoint). They are ``final_params`` (a stopped run's parameters
    freeze); for a run that never stopped, its last parameters."""
    return self.final_params


class Runs:
  """The R runs of one training call placed on a mesh, with its programs.

  The runs are padded to a multiple of the mesh's device count by repeating
  the last, and sharded over it; the data are replicated. Seed s draws from
  ``split(fold_in(key, s))`` (initialisation, minibatches).

  Attributes:
    task, cfg: the setup.
    num_runs: R.
    hp: RunHParams (R',) of the padded runs.
    init_keys, batch_keys: (R',) keys of the initialisation and minibatches.
    all_data: the data pytree, replicated.
    shared_num_train: the train size as an int when all runs share it.
    programs: the jitted programs of the mesh.
  """

  def __init__(
    self,
    key: PRNGKey,
    all_data: ArrayTree,
    hparams: dict[str, np.ndarray],
    task: Task,
    cfg: LoopConfig,
    mesh: Mesh,
  ):
    self.task, self.cfg, self.mesh = task, cfg, mesh
    self.num_runs = len(hparams["seed"])
    self._rows = distributed.pad_index(
      self.num_runs, distributed.padded_size(self.num_runs, mesh)
    )
    self.hp = self.pad(
      RunHParams(
        hparams["lr"].astype(np.float32),
        hparams["weight_decay"].astype(np.float32),
        hparams["num_train"].astype(np.int32),
      )
    )
    run_keys = self.pad(
      jax.vmap(lambda s: jax.random.split(jax.random.fold_in(key, s)))(
        jnp.asarray(hparams["seed"])
      )
    )
    self.init_keys, self.batch_keys = run_keys[:, 0], run_keys[:, 1]
    self.all_data = distributed.put(all_data, distributed.replicated(mesh))
    sizes = set(hparams["num_train"].tolist())
    self.shared_num_train = sizes.pop() if len(sizes) == 1 else None
    self.programs = loop.programs(mesh)

  def pad(self, tree: ArrayTree) -> ArrayTree:
    """Host arrays (R, ...) padded and sharded over the mesh (R', ...)."""
    padded = jax.tree.map(lambda x: x[self._rows], tree)
    return distributed.put(padded, distributed.sharded(self.mesh))

  def host(self, tree: ArrayTree) -> ArrayTree:
    """Sharded arrays (R', ...) as host arrays (R, ...); a collective."""
    return jax.tree.map(lambda x: x[: self.num_runs], distributed.fetch(tree))

  def initial(self) -> tuple[TrainState, StopState, np.ndarray]:
    """The initial states, no run stopped, and the step-0 metrics (R, M)."""
    state, metrics = self.programs.init_runs(
      self.init_keys, self.hp, self.all_data, self.task, self.cfg
    )
    running = StopState(
      np.zeros(self.num_runs, np.int32), np.full(self.num_runs, -1, np.int32)
    )
    return state, self.pad(running), self.host(metrics)

  def dispatch(self, chunk: int, state: TrainState, stop: StopState) -> tuple:
    """Starts chunk ``chunk`` (asynchronously): the chunk program's outputs."""
    return self.programs.run_chunk(
      state,
      stop,
      self.hp,
      self.batch_keys,
      self.all_data,
      np.int32(chunk * self.cfg.chunk_steps),
      self.task,
      self.cfg,
      self.shared_num_train,
    )


class _Timer:
  """Steps per second from the end of a call's first chunk (which includes
  compilation) to the end of its last; nan if only one chunk ran."""

  def __init__(self):
    self.start, self.steps, self.seconds = None, 0, 0.0

  def lap(self, steps: int) -> None:
    """Records the end of a chunk of ``steps`` steps (over all runs)."""
    now = time.perf_counter()
    if self.start is None:
      self.start = now
    else:
      self.steps, self.seconds = self.steps + steps, now - self.start

  @property
  def rate(self) -> float:
    return self.steps / self.seconds if self.seconds else float("nan")


def _chunks_to_run(
  cfg: LoopConfig, done: int, max_chunks: Optional[int]
) -> range:
  """The chunks this call may run, after ``done`` saved ones."""
  if done == 0 and max_chunks == 0:
    raise ValueError(
      "max_chunks=0 is invalid without a saved state to resume: the call "
      "would run no chunk and have nothing to return"
    )
  num_chunks = cfg.num_steps // cfg.chunk_steps
  end = num_chunks if max_chunks is None else min(num_chunks, done + max_chunks)
  return range(done, end)


def _train_chunks(
  runs: Runs,
  state: TrainState,
  stop: StopState,
  chunks: range,
  resume: Optional[Resume],
  progress: bool,
):
  """Runs ``chunks`` (fewer once every run has stopped), saving each.

  The next chunk is dispatched before the last one's outputs are copied to
  the host, so the copies, saving and progress overlap the computation.

  Returns:
    (state, stop (host), checkpoints, metrics (lists of the chunks' host
    arrays), steps per second (``_Timer``)).
  """
  cfg, timer, ckpts, metrics = runs.cfg, _Timer(), [], []
  bar = tqdm(
    total=cfg.num_steps // cfg.chunk_steps,
    initial=chunks.start,
    desc="train chunks",
    disable=not progress or not distributed.is_writer(),
  )
  stop_host = runs.host(stop)

  def start(chunk, state, stop):
    goes_on = chunk in chunks and not np.all(stop_host.stop_step >= 0)
    return runs.dispatch(chunk, state, stop) if goes_on else None

  chunk, outputs = chunks.start, start(chunks.start, state, stop)
  while outputs is not None:
    state, stop, new_ckpts, new_metrics = jax.block_until_ready(outputs)
    stop_host = runs.host(stop)
    timer.lap(cfg.chunk_steps * runs.num_runs)
    outputs = start(chunk + 1, state, stop)
    ckpts.append(runs.host(new_ckpts))
    metrics.append(runs.host(new_metrics))
    if resume:
      resume.save(chunk, ckpts[-1], metrics[-1], runs.host(state), stop_host)
    if cfg.stop_metric is not None:
      stopped = int(np.sum(stop_host.stop_step >= 0))
      bar.set_postfix(stopped=f"{stopped}/{runs.num_runs}")
    bar.update(1)
    chunk += 1
  bar.close()
  return state, stop_host, ckpts, metrics, timer.rate


def _result(
  runs: Runs,
  hparams: dict[str, np.ndarray],
  ckpts: list,
  metrics: list,
  final_params: ArrayTree,
  steps_per_second: float,
  stop_step: np.ndarray,
) -> TrainResult:
  """The TrainResult of the chunks' checkpoints and metrics (step 0's metrics
  first)."""
  all_metrics = np.concatenate(metrics, axis=1)
  checkpoints = jax.tree.map(lambda *x: np.concatenate(x, axis=1), *ckpts)
  num_ckpts = jax.tree.leaves(checkpoints)[0].shape[1]
  names = runs.task.metric_names
  return TrainResult(
    checkpoints=checkpoints,
    ckpt_steps=runs.cfg.ckpt_every * np.arange(1, num_ckpts + 1),
    log_steps=runs.cfg.log_every * np.arange(all_metrics.shape[1]),
    metrics={name: all_metrics[..., i] for i, name in enumerate(names)},
    hparams=hparams,
    final_params=final_params,
    steps_per_second=steps_per_second,
    stop_step=stop_step,
  )


def _train_runs(
  runs: Runs,
  fingerprint: Optional[str],
  out_dir: Optional[str],
  max_chunks: Optional[int],
  progress: bool,
  hparams: dict[str, np.ndarray],
) -> TrainResult:
  """Trains placed ``runs``, resuming from and saving to ``out_dir`` (under
  the setup's ``fingerprint``) when given; see ``train_models``."""
  state, stop, metrics0 = runs.initial()
  resume, ckpts, metrics = None, [], []
  if out_dir:
    resume = Resume(out_dir, fingerprint)
    state, stop, ckpts, metrics = resume.restore(runs, state, stop)
  distributed.check_agreement([len(ckpts)], f"the chunks saved in {out_dir}")

  chunks = _chunks_to_run(runs.cfg, len(ckpts), max_chunks)
  state, stop_host, new_ckpts, new_metrics, steps_per_second = _train_chunks(
    runs, state, stop, chunks, resume, progress
  )
  if out_dir:
    distributed.wait_for_writer(f"saving the training state in {out_dir}")
  return _result(
    runs,
    hparams,
    ckpts + new_ckpts,
    [metrics0[:, None]] + metrics + new_metrics,
    runs.host(state.params),
    steps_per_second,
    stop_host.stop_step,
  )


def _check_setup(
  task: Task, data: ArrayTree, cfg: LoopConfig, out_dir, spec, max_chunks
) -> int:
  """Checks ``train_models``' task, data, config, spec and max_chunks;
  returns N, the rows of the data."""
  if max_chunks is not None:
    check(
      is_int(max_chunks) and max_chunks >= 0,
      "max_chunks",
      max_chunks,
      "must be an integer >= 0 or None",
    )
  if not isinstance(cfg, LoopConfig):
    raise TypeError(f"cfg={cfg!r} is invalid: must be a LoopConfig")
  names = tuple(task.metric_names)
  if cfg.stop_metric is not None:
    check(
      cfg.stop_metric in names,
      "stop_metric",
      cfg.stop_metric,
      f"must be one of the task's metric_names {names}",
    )
  rows = {np.shape(x)[0] if np.ndim(x) else 0 for x in jax.tree.leaves(data)}
  check(
    len(rows) == 1 and rows != {0},
    "data",
    jax.tree.map(np.shape, data),
    "must be a pytree of arrays sharing a leading axis of rows",
  )
  if out_dir:
    check(
      isinstance(spec, dict) and not set(spec) & set(RESERVED_SPEC_KEYS),
      "spec",
      spec,
      "must be a JSON-able dict describing the model (and not naming "
      f"{RESERVED_SPEC_KEYS}) when out_dir is given",
    )
  return rows.pop()


def train_models(
  key: PRNGKey,
  task: Task,
  data: ArrayTree,
  cfg: LoopConfig,
  *,
  num_train: int,
  seeds: int = 1,
  seed_ids: Optional[Sequence[int]] = None,
  lrs: Optional[Sequence[float]] = None,
  weight_decays: Optional[Sequence[float]] = None,
  num_trains: Optional[Sequence[int]] = None,
  out_dir: Optional[str] = None,
  spec: Optional[dict] = None,
  max_chunks: Optional[int] = None,
  progress: bool = True,
  devices: Optional[Sequence[jax.Device]] = None,
) -> TrainResult:
  """Trains seeds × grid runs of any model at once, sharded over ``devices``.

  Args:
    key: PRNG key, typed or legacy; seed s uses ``fold_in(key, s)``, split
      into its initialisation and minibatch keys.
    task: the model's ``init``, ``loss`` and ``metrics`` (``loop.Task``).
    data: a pytree of arrays (N, ...) sharing the leading axis of rows:
      each run trains on its first ``num_train`` rows; the rest validate.
    cfg: the optimiser, schedule and stopping rule.
    num_train: the train size of the runs when ``num_trains`` is None.
    seeds, seed_ids, lrs, weight_decays, num_trains: the runs, seeds ×
      the product of the grids, seed-major (``grid.resolve_grid``).
    out_dir: where the resumable state is kept (after every chunk, each
      file written atomically and stamped with the setup's fingerprint); a
      state of the same setup is resumed, one of another setup is refused
      with a ValueError naming the folder. Nothing is deleted:
      ``remove_saved_state`` cleans up.
    spec: with ``out_dir``, a JSON-able dict describing what the loop cannot
      see (the model: architecture, initialisation), added to the
      fingerprint with the key, data, config and runs.
    max_chunks: stop after this many chunks in this call; the state stays
      resumable.
    progress: show a tqdm bar per chunk.
    devices: devices to shard the runs axis over (default: all); runs are
      padded to a multiple of the device count by repeating the last.

  Returns:
    TrainResult, its metrics named by ``task.metric_names``.

  Raises:
    ValueError: naming the argument and value (the grids, ``stop_metric``,
      ``data``, ``spec``, ``max_chunks``), or the file or folder of a saved
      state that cannot be resumed.
    TypeError: if ``cfg`` is not a ``LoopConfig``.

  Example:
    >>> x = jnp.linspace(-1.0, 1.0, 16)[:, None]
    >>> data = {"x": x, "y": 3.0 * x[:, 0]}
    >>> mse = lambda w, d: jnp.mean((d["x"] @ w - d["y"]) ** 2)
    >>> task = Task(init=lambda key: jnp.zeros(1), loss=mse,
    ...             metrics=lambda w, d, n: mse(w, d)[None],
    ...             metric_names=("loss",))
    >>> cfg = LoopConfig(optimizer="sgd", lr=0.5, weight_decay=0.0,
    ...                  batch_size=12, num_steps=200, log_every=100,
    ...                  ckpt_every=100, chunk_steps=200)
    >>> r = train_models(jax.random.key(0), task, data, cfg, num_train=12,
    ...                  lrs=[0.1, 0.5], progress=False)
    >>> r.final_params.shape, r.metrics["loss"].shape
    ((2, 1), (2, 3))
    >>> bool(np.abs(r.final_params[:, 0] - 3.0).max() < 1e-3)  # least squares
    True
  """
  key = grid_lib.typed_key(key)
  num_rows = _check_setup(task, data, cfg, out_dir, spec, max_chunks)
  grid = grid_lib.resolve_grid(
    cfg,
    num_rows,
    num_train,
    seeds=seeds,
    seed_ids=seed_ids,
    lrs=lrs,
    weight_decays=weight_decays,
    num_trains=num_trains,
  )
  hparams = grid_lib.grid_runs(grid)
  runs = Runs(key, data, hparams, task, cfg, distributed.work_mesh(devices))
  fingerprint = (
    setup_fingerprint(key, data, cfg, hparams, spec) if out_dir else None
  )
  return _train_runs(runs, fingerprint, out_dir, max_chunks, progress, hparams)
