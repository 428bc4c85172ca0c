"""One run's compiled loop: the task it trains, its state, the optimizer and
the early-stopping rule, and the programs that run many runs at once.

The loop is ``lax.scan`` nested as chunk → checkpoint interval → log interval
→ step, written for one run and vmapped over the runs; the per-run
hyperparameters (``RunHParams``) are traced arrays, so a grid of them
compiles once. Minibatch ``t`` of a run depends only on its key and ``t``
(``slt_jax.batching``), so chunking and resuming give bit-identical results.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from slt_jax import batching, distributed
from slt_jax.training.config import LoopConfig
from slt_jax.tree_types import ArrayTree, PRNGKey

__all__ = [
  "Task",
  "TrainState",
  "StopState",
  "RunHParams",
  "Programs",
  "make_optimizer",
  "programs",
]


class Task(NamedTuple):
  """What is trained: a model's initialisation, loss and metrics.

  The functions are pure and describe one run; the loop vmaps them. A task is
  a static argument of the compiled programs, so a task equal to an earlier
  one (the same function objects) reuses its compilation; any hashable
  object with these attributes serves as a task.

  Attributes:
    init: ``init(key) -> params``, a params pytree of one run.
    loss: ``loss(params, batch) -> scalar``, minimised on minibatches;
      ``batch`` is the data pytree with B rows taken from each leaf.
    metrics: ``metrics(params, data, num_train) -> (M,)``, evaluated on all
      rows of the data every ``log_every`` steps; rows ``[0, num_train)``
      are the run's training set, the rest its validation set (``num_train``
      is a traced scalar).
    metric_names: the M names of ``metrics``' entries, in order.
  """

  init: Callable[[PRNGKey], ArrayTree]
  loss: Callable[[ArrayTree, ArrayTree], jax.Array]
  metrics: Callable[[ArrayTree, ArrayTree, jax.Array], jax.Array]
  metric_names: tuple[str, ...]


class TrainState(NamedTuple):
  """Optimisation state of one run.

  Attributes:
    params: model parameters.
    opt_state: optax state.
    step: scalar int32, steps of the loop taken (it keeps counting after an
      early stop, when ``params`` and ``opt_state`` are frozen).
  """

  params: ArrayTree
  opt_state: ArrayTree
  step: jax.Array


class StopState(NamedTuple):
  """Early-stopping state of one run (see ``LoopConfig.stop_metric``).

  Attributes:
    streak: scalar int32, consecutive checks so far past the threshold.
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

  Raises:
    ValueError: naming ``optimizer`` if ``name`` is none of the three.

  Example:
    >>> opt = make_optimizer("sgd", 0.5, 0.0, momentum=0.0)
    >>> params = {"w": jnp.ones(2)}
    >>> updates, _ = opt.update({"w": jnp.ones(2)}, opt.init(params), params)
    >>> updates["w"].tolist()
    [-0.5, -0.5]
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


def _update_stop(
  stop: StopState, value: jax.Array, step: jax.Array, cfg: LoopConfig
) -> StopState:
  """The stopping rule after the evaluation at ``step`` (a logged step), with
  ``value`` the run's ``cfg.stop_metric`` there."""
  check_every = cfg.stop_check_every or cfg.log_every
  checked = (step % check_every == 0) & (stop.stop_step < 0)
  past = value <= cfg.stop_at if cfg.stop_below else value >= cfg.stop_at
  streak = jnp.where(checked, jnp.where(past, stop.streak + 1, 0), stop.streak)
  fired = checked & (streak >= cfg.stop_patience)
  return StopState(streak, jnp.where(fired, step, stop.stop_step))


def _run_chunk(
  state: TrainState,
  stop: StopState,
  hp: RunHParams,
  batch_key: PRNGKey,
  all_data: ArrayTree,
  start_step: jax.Array,
  task: Task,
  cfg: LoopConfig,
  shared_num_train: Optional[int],
):
  """Advances one run by ``cfg.chunk_steps`` steps from ``start_step``.

  ``start_step`` (= ``state.step``) is passed unbatched, and the training-set
  size as a Python int when all runs share it, so that under ``vmap`` the
  epoch permutation is redrawn once per epoch, not sorted every step. Without
  a ``cfg.stop_metric`` the stopping rule is not traced at all.

  Returns:
    (state, stop, checkpoints (chunk/ckpt_every, ...),
    metrics (chunk/log_every, M)).
  """
  optimizer = make_optimizer(
    cfg.optimizer, hp.lr, hp.weight_decay, cfg.momentum
  )
  capacity = jax.tree.leaves(all_data)[0].shape[0]
  num_train = hp.num_train if shared_num_train is None else shared_num_train
  stopping = cfg.stop_metric is not None

  def one_step(carry, _):
    state, stop, perm, t = carry
    perm, idx = batching.next_batch(
      batch_key, perm, t, num_train, cfg.batch_size
    )
    grads = jax.grad(task.loss)(state.params, batching.take(all_data, idx))
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
    metrics = task.metrics(state.params, all_data, hp.num_train)
    if stopping:
      value = metrics[task.metric_names.index(cfg.stop_metric)]
      stop = _update_stop(stop, value, t, cfg)
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
  return state, stop, ckpts, metrics.reshape(-1, len(task.metric_names))


def _run_chunk_batched(
  state, stop, hp, batch_keys, all_data, start_step, task, cfg, shared_num_train
):
  return jax.vmap(_run_chunk, in_axes=(0, 0, 0, 0) + (None,) * 5)(
    state,
    stop,
    hp,
    batch_keys,
    all_data,
    start_step,
    task,
    cfg,
    shared_num_train,
  )


def _init_runs(
  keys: jax.Array,
  hp: RunHParams,
  all_data: ArrayTree,
  task: Task,
  cfg: LoopConfig,
):
  """Initial states (R, ...) and step-0 metrics (R, M)."""

  def one(key, hp_run):
    params = task.init(key)
    opt = make_optimizer(
      cfg.optimizer, hp_run.lr, hp_run.weight_decay, cfg.momentum
    )
    state = TrainState(params, opt.init(params), jnp.zeros((), jnp.int32))
    return state, task.metrics(params, all_data, hp_run.num_train)

  return jax.vmap(one)(keys, hp)


class Programs(NamedTuple):
  """The jitted programs of one mesh, the runs axis sharded over it (data and
  step replicated), so each call is one program.

  JAX caches traces and compilations by function, static arguments and
  shardings, so the programs of an equal mesh built again compile nothing
  for an equal task and config.

  Attributes:
    init_runs: ``(keys (R,), hp, data, task, cfg) -> (TrainState, metrics
      (R, M))``.
    run_chunk: ``(state, stop, hp, batch_keys (R,), data, start_step, task,
      cfg, shared_num_train) -> (state, stop, checkpoints (R, C, ...),
      metrics (R, L, M))``, one chunk of every run.
  """

  init_runs: Callable
  run_chunk: Callable


def programs(mesh: Mesh) -> Programs:
  """The loop's programs jitted over ``mesh``."""
  by_run, whole = distributed.sharded(mesh), distributed.replicated(mesh)
  return Programs(
    init_runs=jax.jit(
      _init_runs,
      static_argnums=(3, 4),
      in_shardings=(by_run, by_run, whole),
      out_shardings=by_run,
    ),
    run_chunk=jax.jit(
      _run_chunk_batched,
      static_argnums=(6, 7, 8),
      in_shardings=(by_run,) * 4 + (whole,) * 2,
      out_shardings=by_run,
    ),
  )
