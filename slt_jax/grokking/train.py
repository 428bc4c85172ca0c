"""Training many runs of the quadratic network as one compiled program.

Optimizers are optax chains (``make_optimizer``). ``train`` vmaps one run's
loop over seeds × a grid of (lr, weight decay, train size); the hyperparameters
are traced arrays, so the grid compiles once (a train size shared by all runs
is static instead, which keeps the minibatch shuffle to one sort per epoch; a
new shared size compiles anew). The loop is ``lax.scan`` nested
as chunk → checkpoint interval → log interval → step; each chunk is one call of
the compiled program. The next chunk is dispatched before the previous one's
outputs are copied to the host, so showing progress and saving (given
``out_dir``: each chunk's checkpoints and metrics in a file of their own plus
the small current state, all written atomically) overlap the computation, and
an interrupted run resumes where it stopped. Minibatch ``t`` of a run depends
only on its key and ``t``, so chunking and resuming give bit-identical results.

Early stopping (``TrainConfig.stop_acc``, SPEC §2b) is per run: at each check
the run's validation accuracy updates a streak; once the rule fires, that run's
parameters and optimizer state freeze (its steps are still computed, then
discarded) while the other runs of the grid go on, and the loop ends after the
chunk in which the last run stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import os
import shutil
import time
import zipfile
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from slt_jax import batching, distributed, persist
from slt_jax.grokking import losses, model
from slt_jax.grokking.config import ModelConfig, TrainConfig
from slt_jax.grokking.data import Batch, ModularData
from slt_jax.tree_types import ArrayTree, PRNGKey

METRIC_NAMES = ("train_loss", "val_loss", "train_acc", "val_acc")
# Bumped when the layout of ``out_dir`` changes: older states are not resumed.
STATE_FORMAT = 2
STATE_FILE = "train_state.npz"
CHUNKS_DIR = "train_chunks"


class TrainState(NamedTuple):
  """Optimisation state of one run.

  Attributes:
    params: network parameters.
    opt_state: optax state.
    step: scalar int32, steps of the loop taken (it keeps counting after an
      early stop, when ``params`` and ``opt_state`` are frozen).
  """

  params: ArrayTree
  opt_state: ArrayTree
  step: jax.Array


class StopState(NamedTuple):
  """Early-stopping state of one run (see ``TrainConfig.stop_acc``).

  Attributes:
    streak: scalar int32, consecutive checks so far with val acc >= stop_acc.
    stop_step: scalar int32, the step at which the rule fired; -1 while the
      run goes on.
  """

  streak: jax.Array
  stop_step: jax.Array


class RunHParams(NamedTuple):
  """Per-run traced hyperparameters (each a scalar, or (R,) when stacked)."""

  lr: jax.Array
  weight_decay: jax.Array
  num_train: jax.Array


class TrainResult(NamedTuple):
  """Outcome of ``train`` for R runs (R = seeds × grid points, seed-major).

  Attributes:
    checkpoints: params stacked (R, C, ...), taken after steps ``ckpt_steps``.
    ckpt_steps: (C,) steps of the checkpoints.
    log_steps: (L,) steps of the logged metrics (step 0 included).
    metrics: name -> (R, L) for ``METRIC_NAMES`` on the full train/val sets.
    hparams: ``lr``, ``weight_decay``, ``num_train``, ``seed`` -> (R,).
    final_params: params (R, ...) after the last step (for a run that
      stopped early: at its stop step, since its parameters froze there).
    steps_per_second: optimisation steps per second summed over runs
      (stopped runs included: their steps are computed, then discarded),
      measured from the end of the first chunk of this call to the end of
      the last (compile excluded; nan if only one chunk ran in this call).
    stop_step: (R,) int, the step at which each run's early-stopping rule
      fired, -1 where it never did (always -1 when ``stop_acc`` is None).
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
    """Params (R, ...) at each run's stop step: the final checkpoint of the
    authors' protocol (SPEC §2b). They are ``final_params`` (a stopped run's
    parameters freeze); for a run that never stopped, its last parameters."""
    return self.final_params


def make_optimizer(
  name: str, lr, weight_decay, momentum: float = 0.9
) -> optax.GradientTransformation:
  """The optax chain for ``name``.

  Args:
    name: ``adam`` (coupled L2: ``add_decayed_weights`` before ``adam``, as
      PyTorch's ``Adam(weight_decay=...)``), ``adamw`` (decoupled) or ``sgd``
      (coupled L2, momentum).
    lr: learning rate (float or traced scalar).
    weight_decay: decay coefficient (float or traced scalar).
    momentum: SGD momentum.

  Returns:
    An ``optax.GradientTransformation``.
  """
  if name == "adam":
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(lr))
  if name == "adamw":
    return optax.adamw(lr, weight_decay=weight_decay)
  if name == "sgd":
    return optax.chain(
      optax.add_decayed_weights(weight_decay), optax.sgd(lr, momentum=momentum)
    )
  raise ValueError(f"optimizer={name!r} is invalid: must be adam, adamw or sgd")


def evaluate(
  params: ArrayTree,
  all_data: Batch,
  num_train: jax.Array,
  loss_name: str,
  form: Optional[str] = None,
) -> jax.Array:
  """Loss and accuracy on the train prefix and validation rest of ``all_data``.

  Args:
    params: network parameters.
    all_data: Batch of all pairs, training pairs first.
    num_train: scalar number of training rows.
    loss_name: loss to report.
    form: the network's first-layer form (``model.apply``).

  Returns:
    (4,) array ordered as ``METRIC_NAMES``.
  """
  out_NxP = model.apply(params, all_data.pairs, form)
  in_train_N = (jnp.arange(out_NxP.shape[0]) < num_train).astype(jnp.float32)
  values = []
  for fn in (
    functools.partial(losses.loss_from_outputs, loss_name),
    losses.accuracy_from_outputs,
  ):
    values.append(
      [
        fn(out_NxP, all_data.labels, w_N)
        for w_N in (in_train_N, 1.0 - in_train_N)
      ]
    )
  (train_loss, val_loss), (train_acc, val_acc) = values
  return jnp.stack([train_loss, val_loss, train_acc, val_acc])


def _update_stop(
  stop: StopState, val_acc: jax.Array, step: jax.Array, cfg: TrainConfig
) -> StopState:
  """The stopping rule after the evaluation at ``step`` (a logged step)."""
  check_every = cfg.stop_check_every or cfg.log_every
  checked = (step % check_every == 0) & (stop.stop_step < 0)
  streak = jnp.where(
    checked, jnp.where(val_acc >= cfg.stop_acc, stop.streak + 1, 0), stop.streak
  )
  fired = checked & (streak >= cfg.stop_patience)
  return StopState(streak, jnp.where(fired, step, stop.stop_step))


def _run_chunk(
  state: TrainState,
  stop: StopState,
  hp: RunHParams,
  batch_key: PRNGKey,
  all_data: Batch,
  start_step: jax.Array,
  cfg: TrainConfig,
  shared_num_train: Optional[int],
  form: str,
):
  """Advances one run by ``cfg.chunk_steps`` steps from ``start_step``
  (``form``: the network's first-layer form).

  ``start_step`` (= ``state.step``) is passed unbatched, and the training-set
  size as a Python int when all runs share it, so that under ``vmap`` the
  epoch permutation is redrawn once per epoch, not sorted every step. With
  ``cfg.stop_acc`` None the stopping rule is not traced at all.

  Returns:
    (state, stop, checkpoints (chunk/ckpt_every, ...),
    metrics (chunk/log_every, 4)).
  """
  loss_fn = losses.make_loss(cfg.loss, form)
  optimizer = make_optimizer(
    cfg.optimizer, hp.lr, hp.weight_decay, cfg.momentum
  )
  capacity = all_data.labels.shape[0]
  num_train = hp.num_train if shared_num_train is None else shared_num_train
  stopping = cfg.stop_acc is not None

  def one_step(carry, _):
    state, stop, perm, t = carry
    perm, idx = batching.next_batch(
      batch_key, perm, t, num_train, cfg.batch_size
    )
    grads = jax.grad(loss_fn)(state.params, batching.take(all_data, idx))
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if stopping:  # A stopped run keeps its parameters and optimizer state.
      frozen = stop.stop_step >= 0
      params, opt_state = jax.tree.map(
        lambda old, new: jnp.where(frozen, old, new),
        (state.params, state.opt_state),
        (params, opt_state),
      )
    state = TrainState(params, opt_state, state.step + 1)
    return (state, stop, perm, t + 1), None

  def log_interval(carry, _):
    carry, _ = jax.lax.scan(one_step, carry, None, length=cfg.log_every)
    state, stop, perm, t = carry
    metrics = evaluate(state.params, all_data, hp.num_train, cfg.loss, form)
    if stopping:
      stop = _update_stop(stop, metrics[METRIC_NAMES.index("val_acc")], t, cfg)
    return (state, stop, perm, t), metrics

  def ckpt_interval(carry, _):
    carry, metrics = jax.lax.scan(
      log_interval, carry, None, length=cfg.ckpt_every // cfg.log_every
    )
    return carry, (carry[0].params, metrics)

  perm = batching.first_permutation(
    batch_key, start_step, num_train, cfg.batch_size, capacity
  )
  (state, stop, _, _), (ckpts, metrics) = jax.lax.scan(
    ckpt_interval,
    (state, stop, perm, start_step),
    None,
    length=cfg.chunk_steps // cfg.ckpt_every,
  )
  return state, stop, ckpts, metrics.reshape(-1, len(METRIC_NAMES))


def _run_chunk_batched(
  state, stop, hp, batch_keys, all_data, start_step, cfg, shared_num_train, form
):
  return jax.vmap(_run_chunk, in_axes=(0, 0, 0, 0) + (None,) * 5)(
    state,
    stop,
    hp,
    batch_keys,
    all_data,
    start_step,
    cfg,
    shared_num_train,
    form,
  )


@functools.lru_cache(maxsize=None)
def _programs(mesh) -> tuple:
  """The jitted ``(init_runs, run_chunk_batched)`` with the runs axis over
  ``mesh`` (data and step replicated), so every chunk is one program."""
  by_run, whole = distributed.sharded(mesh), distributed.replicated(mesh)
  init = jax.jit(
    _init_runs,
    static_argnums=(3, 4, 5),
    in_shardings=(by_run, by_run, whole),
    out_shardings=by_run,
  )
  chunk = jax.jit(
    _run_chunk_batched,
    static_argnums=(6, 7, 8),
    in_shardings=(by_run,) * 4 + (whole,) * 2,
    out_shardings=by_run,
  )
  return init, chunk


def _init_runs(
  keys: jax.Array,
  hp: RunHParams,
  all_data: Batch,
  model_cfg: ModelConfig,
  cfg: TrainConfig,
  form: str,
):
  """Initial states (R, ...) and step-0 metrics (R, 4)."""

  def one(key, hp_run):
    params = model.init(key, model_cfg)
    opt = make_optimizer(
      cfg.optimizer, hp_run.lr, hp_run.weight_decay, cfg.momentum
    )
    state = TrainState(params, opt.init(params), jnp.zeros((), jnp.int32))
    return state, evaluate(params, all_data, hp_run.num_train, cfg.loss, form)

  return jax.vmap(one)(keys, hp)


def _grid(
  cfg: TrainConfig,
  data: ModularData,
  seed_ids: Sequence[int],
  lrs: Optional[Sequence[float]],
  weight_decays: Optional[Sequence[float]],
  num_trains: Optional[Sequence[int]],
) -> dict:
  grid = list(
    itertools.product(
      lrs or [cfg.lr],
      weight_decays or [cfg.weight_decay],
      num_trains or [data.num_train],
    )
  )
  total = data.all.labels.shape[0]
  for lr, wd, n in grid:
    if lr <= 0:
      raise ValueError(f"lr={lr!r} is invalid: must be > 0")
    if wd < 0:
      raise ValueError(f"weight_decay={wd!r} is invalid: must be >= 0")
    if cfg.batch_size > n:
      raise ValueError(
        f"batch_size={cfg.batch_size} exceeds the training set of {n} "
        f"pairs (num_train={n}): lower batch_size or train on more pairs"
      )
    if n >= total:
      raise ValueError(
        f"num_train={n!r} is invalid: it leaves no validation pairs (must "
        f"be < p^2 = {total})"
      )
  runs = [(s, *g) for s in seed_ids for g in grid]
  return {
    name: np.array([r[i] for r in runs])
    for i, name in enumerate(("seed", "lr", "weight_decay", "num_train"))
  }


def _read_npz(path: str, what: str) -> dict:
  """``persist.load_npz`` whose failures name the file (never a silent load)."""
  try:
    return persist.load_npz(path)
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
    raise ValueError(
      f"{path} is unreadable ({type(err).__name__}: {err}): {what}"
    ) from err


def _chunk_path(out_dir: str, chunk: int) -> str:
  return os.path.join(out_dir, CHUNKS_DIR, f"chunk_{chunk:05d}.npz")


def _load_chunk(
  out_dir: str, chunk: int, fingerprint: str, template, metrics_shape: tuple
) -> tuple:
  """(checkpoints, metrics) of a saved chunk, checked against the state."""
  path = _chunk_path(out_dir, chunk)
  advice = (
    f"the saved training state in {out_dir} cannot be resumed; "
    f"delete {os.path.join(out_dir, STATE_FILE)} and "
    f"{os.path.join(out_dir, CHUNKS_DIR)} to train from scratch"
  )
  saved = _read_npz(path, advice)
  if (
    str(saved.get("fingerprint")) != fingerprint
    or int(saved.get("chunk", -1)) != chunk
    or saved.get("metrics", np.zeros(0)).shape != metrics_shape
    or any(
      f"ckpts/{i}" not in saved for i in range(len(jax.tree.leaves(template)))
    )
  ):
    raise ValueError(
      f"{path} does not belong to this run (setup, chunk "
      f"number or shapes differ): {advice}"
    )
  return persist.tree_from_arrays("ckpts", saved, template), saved["metrics"]


def remove_saved_state(out_dir: str) -> None:
  """Deletes the resumable state that ``train`` keeps in ``out_dir``.

  Args:
    out_dir: a folder passed to ``train``; other files in it are kept.

  Example:
    >>> remove_saved_state("/nonexistent/folder")  # nothing to remove
  """
  path = os.path.join(out_dir, STATE_FILE)
  if os.path.exists(path):
    os.remove(path)
  shutil.rmtree(os.path.join(out_dir, CHUNKS_DIR), ignore_errors=True)


def train(
  key: PRNGKey,
  data: ModularData,
  model_cfg: ModelConfig,
  cfg: TrainConfig,
  *,
  seeds: int = 1,
  seed_ids: Optional[Sequence[int]] = None,
  lrs: Optional[Sequence[float]] = None,
  weight_decays: Optional[Sequence[float]] = None,
  num_trains: Optional[Sequence[int]] = None,
  out_dir: Optional[str] = None,
  max_chunks: Optional[int] = None,
  progress: bool = True,
  devices: Optional[Sequence[jax.Device]] = None,
  form: Optional[str] = None,
) -> TrainResult:
  """Trains seeds × grid runs at once, the runs sharded over ``devices``.

  Args:
    key: PRNG key; seed s uses ``fold_in(key, s)`` (so seed s of a grid run
      equals a run with ``seed_ids=[s]``, up to float rounding under vmap).
    data: data set (all pairs with the training prefix).
    model_cfg: network configuration (``p`` must match ``data.p``).
    cfg: training configuration.
    seeds: number of seeds; they are ``0, ..., seeds - 1``.
    seed_ids: explicit seed numbers used instead of ``range(seeds)`` (distinct,
      >= 0), e.g. ``[s]`` to rerun seed s of a larger run on its own; pass
      ``seeds`` only if it equals ``len(seed_ids)``.
    lrs, weight_decays, num_trains: optional grids (defaults: the config's or
      the data's value); runs are the product, seed-major.
    out_dir: where the resumable state is kept: after every chunk its
      checkpoints and metrics go to ``train_chunks/chunk_NNNNN.npz`` and the
      current optimisation state to ``train_state.npz`` (each written
      atomically; I/O per chunk stays constant). A state of the same setup is
      resumed; one of another setup (or an older layout) is ignored and
      overwritten. An unreadable or mismatched file of this setup raises a
      ValueError naming it (nothing is deleted). ``remove_saved_state``
      cleans up.
    max_chunks: stop after this many chunks in this call (for tests of
      resumption); the state stays resumable.
    progress: show a tqdm bar per chunk.
    devices: devices to shard the runs axis over (default: all, of every
      process after ``slt_jax.distributed.initialize``; every process gets
      the full result and only process 0 writes ``out_dir``, which all
      processes must read). Runs are padded to a multiple of the device
      count by repeating the last; results equal an unsharded run.
    form: the network's first-layer form (``model.FORMS``; None: the
      backend's default). Not part of the run's identity: results agree up to
      float rounding, and a saved state resumes under either form.

  Returns:
    TrainResult.

  Example:
    >>> import jax
    >>> from slt_jax.grokking import data as D
    >>> from slt_jax.grokking.config import DataConfig
    >>> d = D.modular_arithmetic(jax.random.key(0), DataConfig(p=5, num_train=12))
    >>> cfg = TrainConfig(batch_size=4, num_steps=20, log_every=10, ckpt_every=10,
    ...                   chunk_steps=20)
    >>> r = train(jax.random.key(1), d, ModelConfig(p=5, width=8), cfg, seeds=2,
    ...           progress=False)
    >>> r.checkpoints["W"].shape, r.metrics["val_acc"].shape
    ((2, 2, 8, 10), (2, 3))
    >>> r.stop_step  # no stopping rule: -1
    array([-1, -1], dtype=int32)
  """
  if model_cfg.p != data.p:
    raise ValueError(f"model p={model_cfg.p} does not match data p={data.p}")
  if seeds < 1:
    raise ValueError(f"seeds={seeds!r} is invalid: must be >= 1")
  if max_chunks is not None and max_chunks < 0:
    raise ValueError(
      f"max_chunks={max_chunks!r} is invalid: must be >= 0 or None"
    )
  if seed_ids is None:
    seed_ids = list(range(seeds))
  else:
    seed_ids = [int(s) for s in seed_ids]
    if (
      not seed_ids
      or len(set(seed_ids)) != len(seed_ids)
      or min(seed_ids) < 0
      or seeds not in (1, len(seed_ids))
    ):
      raise ValueError(
        f"seed_ids={seed_ids!r} is invalid: must be distinct "
        f"integers >= 0, as many as seeds={seeds}"
      )
  hparams = _grid(cfg, data, seed_ids, lrs, weight_decays, num_trains)
  num_runs = len(hparams["seed"])
  mesh = distributed.work_mesh(devices)
  by_run = distributed.sharded(mesh)
  rows = distributed.pad_index(
    num_runs, distributed.padded_size(num_runs, mesh)
  )
  trim = lambda tree: jax.tree.map(lambda x: x[:num_runs], tree)
  pad = lambda tree: distributed.put(
    jax.tree.map(lambda x: x[rows], tree), by_run
  )
  hp = pad(
    RunHParams(
      hparams["lr"].astype(np.float32),
      hparams["weight_decay"].astype(np.float32),
      hparams["num_train"].astype(np.int32),
    )
  )
  run_keys = pad(
    jax.vmap(lambda s: jax.random.split(jax.random.fold_in(key, s)))(
      jnp.asarray(hparams["seed"])
    )
  )
  init_keys, batch_keys = run_keys[:, 0], run_keys[:, 1]
  all_data = distributed.put(data.all, distributed.replicated(mesh))
  shared_num_train = (
    int(hparams["num_train"][0])
    if len(set(hparams["num_train"])) == 1
    else None
  )
  init_runs, run_chunk_batched = _programs(mesh)
  form = model.default_form() if form is None else form
  if form not in model.FORMS:
    raise ValueError(f"form={form!r} is invalid: must be one of {model.FORMS}")
  state, metrics0 = init_runs(init_keys, hp, all_data, model_cfg, cfg, form)
  stop = pad(
    StopState(np.zeros(num_runs, np.int32), np.full(num_runs, -1, np.int32))
  )
  data_hash = hashlib.sha256(
    np.asarray(data.all.pairs).tobytes() + np.asarray(data.all.labels).tobytes()
  )
  fingerprint = repr(
    (
      STATE_FORMAT,
      dataclasses.astuple(model_cfg),
      dataclasses.astuple(cfg),
      {k: v.tolist() for k, v in hparams.items()},
      np.asarray(jax.random.key_data(key)).tolist(),
      data_hash.hexdigest(),
      data.num_train,
    )
  )
  ckpts, metrics = [], [trim(distributed.fetch(metrics0))[:, None]]
  done = 0
  state_path = os.path.join(out_dir, STATE_FILE) if out_dir else None
  if state_path and os.path.exists(state_path):
    saved = _read_npz(
      state_path,
      f"delete it and "
      f"{os.path.join(out_dir, CHUNKS_DIR)} to train from "
      "scratch",
    )
    if str(saved.get("fingerprint")) == fingerprint:
      state = pad(persist.tree_from_arrays("state", saved, state))
      stop = pad(persist.tree_from_arrays("stop", saved, stop))
      done = int(saved["chunks_done"])
      metrics_shape = (
        num_runs,
        cfg.chunk_steps // cfg.log_every,
        len(METRIC_NAMES),
      )
      for chunk in range(done):
        chunk_ckpts, chunk_metrics = _load_chunk(
          out_dir, chunk, fingerprint, state.params, metrics_shape
        )
        ckpts.append(chunk_ckpts)
        metrics.append(chunk_metrics)
  distributed.check_agreement([done], f"the chunks saved in {out_dir}")

  num_chunks = cfg.num_steps // cfg.chunk_steps
  stopping = cfg.stop_acc is not None

  def may_run(chunk: int, stop_host: StopState) -> bool:
    return (
      chunk < num_chunks
      and (max_chunks is None or chunk - done < max_chunks)
      and not (stopping and np.all(stop_host.stop_step >= 0))
    )

  def dispatch(chunk: int, state: TrainState, stop: StopState):
    return run_chunk_batched(
      state,
      stop,
      hp,
      batch_keys,
      all_data,
      np.int32(chunk * cfg.chunk_steps),
      cfg,
      shared_num_train,
      form,
    )

  bar = tqdm(
    total=num_chunks,
    initial=done,
    desc="train chunks",
    disable=not progress or not distributed.is_writer(),
  )
  timed_steps, timed_seconds, first_end = 0, 0.0, None
  chunk = done
  stop_host = trim(distributed.fetch(stop))
  outputs = dispatch(chunk, state, stop) if may_run(chunk, stop_host) else None
  while outputs is not None:
    state, stop, new_ckpts, new_metrics = jax.block_until_ready(outputs)
    stop_host = trim(distributed.fetch(stop))
    now = time.perf_counter()
    if first_end is None:  # The first chunk of a call includes compilation.
      first_end = now
    else:
      timed_steps += cfg.chunk_steps * num_runs
      timed_seconds = now - first_end
    # Dispatch the next chunk first: the host work below overlaps it.
    outputs = (
      dispatch(chunk + 1, state, stop)
      if may_run(chunk + 1, stop_host)
      else None
    )
    ckpts.append(trim(distributed.fetch(new_ckpts)))
    metrics.append(trim(distributed.fetch(new_metrics)))
    if out_dir:
      state_host = trim(distributed.fetch(state))  # A collective: all call it.
      if distributed.is_writer():
        persist.save_npz(
          _chunk_path(out_dir, chunk),
          {
            "fingerprint": np.array(fingerprint),
            "chunk": chunk,
            "metrics": metrics[-1],
            **persist.tree_to_arrays("ckpts", ckpts[-1]),
          },
        )
        persist.save_npz(
          state_path,
          {
            "fingerprint": np.array(fingerprint),
            "chunks_done": chunk + 1,
            **persist.tree_to_arrays("state", state_host),
            **persist.tree_to_arrays("stop", stop_host),
          },
        )
    if stopping:
      bar.set_postfix(
        stopped=f"{int(np.sum(stop_host.stop_step >= 0))}/{num_runs}"
      )
    bar.update(1)
    chunk += 1
  bar.close()
  if out_dir:
    distributed.wait_for_writer(f"saving the training state in {out_dir}")
  if not ckpts:
    raise ValueError(
      f"max_chunks={max_chunks!r} ran no chunk and no saved "
      "state was found: nothing to return"
    )
  all_metrics = np.concatenate(metrics, axis=1)
  num_logged = all_metrics.shape[1]
  checkpoints = jax.tree.map(lambda *x: np.concatenate(x, axis=1), *ckpts)
  num_ckpts = jax.tree.leaves(checkpoints)[0].shape[1]
  return TrainResult(
    checkpoints=checkpoints,
    ckpt_steps=cfg.ckpt_every * np.arange(1, num_ckpts + 1),
    log_steps=cfg.log_every * np.arange(num_logged),
    metrics={name: all_metrics[..., i] for i, name in enumerate(METRIC_NAMES)},
    hparams=hparams,
    final_params=trim(distributed.fetch(state.params)),
    steps_per_second=(
      timed_steps / timed_seconds if timed_seconds else float("nan")
    ),
    stop_step=stop_host.stop_step,
  )
