"""Training many runs of the quadratic network as one compiled program.

Optimizers are optax chains (``make_optimizer``). ``train`` vmaps one run's
loop over seeds × a grid of (lr, weight decay, train size); the hyperparameters
are traced arrays, so the grid compiles once (a train size shared by all runs
is static instead, which keeps the minibatch shuffle to one sort per epoch; a
new shared size compiles anew). The loop is ``lax.scan`` nested
as chunk → checkpoint interval → log interval → step; each chunk is one call of
the compiled program. The next chunk is dispatched before the previous one's
outputs are copied to the host, so showing progress and saving overlap the
computation. Given ``out_dir``, an interrupted run resumes where it stopped,
through ``slt_jax.persist``: the setup is named by ``persist.fingerprint`` of
its spec, each chunk's checkpoints and metrics are a part of a
``persist.Parts`` folder, and the small current state is one file stamped
with the same fingerprint; a folder of another setup is refused. Minibatch
``t`` of a run depends only on its key and ``t``, so chunking and resuming
give bit-identical results.

Early stopping (``TrainConfig.stop_acc``) is per run: at each check
the run's validation accuracy updates a streak; once the rule fires, that run's
parameters and optimizer state freeze (its steps are still computed, then
discarded) while the other runs of the grid go on, and the loop ends after the
chunk in which the last run stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import shutil
import time
import zipfile
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from tqdm.auto import tqdm

from slt_jax import batching, distributed, persist
from slt_jax.checks import check, is_int, is_real
from slt_jax.grokking import losses, model
from slt_jax.grokking.config import ModelConfig, TrainConfig
from slt_jax.grokking.data import Batch, ModularData
from slt_jax.tree_types import ArrayTree, PRNGKey

METRIC_NAMES = ("train_loss", "val_loss", "train_acc", "val_acc")
# Part of the fingerprint, bumped when the layout of ``out_dir`` changes: a
# folder of an older layout is refused (see ``train``'s ``out_dir``).
STATE_FORMAT = 3
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
    authors' protocol. They are ``final_params`` (a stopped run's
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


class _Programs(NamedTuple):
  """The jitted programs of one mesh, the runs axis sharded over it (data and
  step replicated), so each call is one program.

  JAX caches traces and compilations by function, static arguments and
  shardings, so the programs of an equal mesh built again compile nothing.
  """

  init_runs: Callable
  run_chunk: Callable


def _programs(mesh: Mesh) -> _Programs:
  """``_init_runs`` and ``_run_chunk_batched`` jitted over ``mesh``."""
  by_run, whole = distributed.sharded(mesh), distributed.replicated(mesh)
  return _Programs(
    init_runs=jax.jit(
      _init_runs,
      static_argnums=(3, 4, 5),
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


def _as_list(name: str, values) -> list:
  """``values`` as a non-empty list (a ValueError naming ``name`` if not)."""
  try:
    values = list(values)
  except TypeError:
    raise ValueError(
      f"{name}={values!r} is invalid: must be a sequence"
    ) from None
  check(bool(values), name, values, "must hold at least one value")
  return values


def _seed_ids(seeds: int, seed_ids: Optional[Sequence[int]]) -> list[int]:
  """The seed numbers: ``range(seeds)``, or ``seed_ids`` checked."""
  check(is_int(seeds) and seeds >= 1, "seeds", seeds, "must be an integer >= 1")
  if seed_ids is None:
    return list(range(seeds))
  ids = _as_list("seed_ids", seed_ids)
  check(
    all(is_int(s) and s >= 0 for s in ids)
    and len(set(ids)) == len(ids)
    and seeds in (1, len(ids)),
    "seed_ids",
    seed_ids,
    f"must be distinct integers >= 0, as many as seeds={seeds}",
  )
  return [int(s) for s in ids]


def _axis(name: str, values, default, kind: type, valid, requirement: str):
  """A grid axis as a list of ``kind``: ``[default]`` for None, else
  ``values`` each checked by ``valid`` (else a ValueError naming the value
  and ``requirement``)."""
  if values is None:
    return [kind(default)]
  values = _as_list(f"{name}s", values)
  for value in values:
    check(valid(value), name, value, requirement)
  return [kind(value) for value in values]


def resolve_grid(
  cfg: TrainConfig,
  data: ModularData,
  *,
  seeds: int = 1,
  seed_ids: Optional[Sequence[int]] = None,
  lrs: Optional[Sequence[float]] = None,
  weight_decays: Optional[Sequence[float]] = None,
  num_trains: Optional[Sequence[int]] = None,
) -> dict[str, list]:
  """The seeds and grid axes of a ``train`` call, checked, defaults filled in.

  Args:
    cfg, data, seeds, seed_ids, lrs, weight_decays, num_trains: as for
      ``train`` (a grid left None is the config's or the data's value).

  Returns:
    ``seed_ids``, ``lrs``, ``weight_decays``, ``num_trains`` -> lists of
    Python ints or floats.

  Raises:
    ValueError: naming the argument and value: a seed count that is not an
      integer >= 1, bad seed ids, an empty grid, a learning rate that is not
      finite and > 0, a weight decay that is not finite and >= 0, a train
      size that leaves no validation pair or is below ``cfg.batch_size``.

  Example:
    >>> import jax
    >>> from slt_jax.grokking import data as D
    >>> from slt_jax.grokking.config import DataConfig
    >>> d = D.modular_arithmetic(jax.random.key(0), DataConfig(p=5, num_train=12))
    >>> resolve_grid(TrainConfig(batch_size=4), d, seeds=2, lrs=[1e-2, 1e-3])
    {'seed_ids': [0, 1], 'lrs': [0.01, 0.001], 'weight_decays': [1e-05], 'num_trains': [12]}
    >>> resolve_grid(TrainConfig(batch_size=4), d, lrs=[float("nan")])
    Traceback (most recent call last):
    ...
    ValueError: lr=nan is invalid: must be a finite number > 0
  """
  num_pairs = int(data.all.labels.shape[0])
  train_sizes = _axis(
    "num_train",
    num_trains,
    data.num_train,
    int,
    lambda n: is_int(n) and 1 <= n < num_pairs,
    f"must be an integer in [1, p^2 - 1] = [1, {num_pairs - 1}] (at least "
    "one pair left for validation)",
  )
  for n in train_sizes:
    if cfg.batch_size > n:
      raise ValueError(
        f"batch_size={cfg.batch_size} exceeds the training set of {n} "
        f"pairs (num_train={n}): lower batch_size or train on more pairs"
      )
  lr_ok = lambda x: is_real(x) and x > 0
  decay_ok = lambda x: is_real(x) and x >= 0
  return {
    "seed_ids": _seed_ids(seeds, seed_ids),
    "lrs": _axis(
      "lr", lrs, cfg.lr, float, lr_ok, "must be a finite number > 0"
    ),
    "weight_decays": _axis(
      "weight_decay",
      weight_decays,
      cfg.weight_decay,
      float,
      decay_ok,
      "must be a finite number >= 0",
    ),
    "num_trains": train_sizes,
  }


def _hparams(grid: dict[str, list]) -> dict[str, np.ndarray]:
  """The runs of a ``resolve_grid`` grid, seed-major: ``seed``, ``lr``,
  ``weight_decay``, ``num_train`` -> (R,)."""
  runs = [
    (seed, *point)
    for seed in grid["seed_ids"]
    for point in itertools.product(
      grid["lrs"], grid["weight_decays"], grid["num_trains"]
    )
  ]
  names = ("seed", "lr", "weight_decay", "num_train")
  return {name: np.array([r[i] for r in runs]) for i, name in enumerate(names)}


def _typed_key(key) -> PRNGKey:
  """``key`` as a typed PRNG key; a legacy uint32 key (``PRNGKey``) is wrapped
  with the default implementation, which draws the same numbers."""
  dtype = getattr(key, "dtype", None)
  if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    typed = key
  else:
    try:
      typed = jax.random.wrap_key_data(key)
    except (TypeError, ValueError) as err:
      raise ValueError(
        f"key={key!r} is invalid: must be a PRNG key (jax.random.key or "
        f"jax.random.PRNGKey) ({err})"
      ) from err
  check(typed.shape == (), "key", key, "must be a single key, not an array")
  return typed


def _check_arguments(
  data: ModularData,
  model_cfg: ModelConfig,
  max_chunks: Optional[int],
  form: Optional[str],
) -> str:
  """Checks ``train``'s other arguments; returns the network's form."""
  if model_cfg.p != data.p:
    raise ValueError(f"model p={model_cfg.p} does not match data p={data.p}")
  if max_chunks is not None:
    check(
      is_int(max_chunks) and max_chunks >= 0,
      "max_chunks",
      max_chunks,
      "must be an integer >= 0 or None",
    )
  form = model.default_form() if form is None else form
  check(form in model.FORMS, "form", form, f"must be one of {model.FORMS}")
  return form


class _Runs:
  """The R runs of one ``train`` call placed on a mesh, with its programs.

  The runs are padded to a multiple of the mesh's device count by repeating
  the last, and sharded over it; the data are replicated. Seed s draws from
  ``split(fold_in(key, s))`` (initialisation, minibatches).

  Attributes:
    model_cfg, cfg, form: the setup.
    num_runs: R.
    hp: RunHParams (R',) of the padded runs.
    init_keys, batch_keys: (R',) keys of the initialisation and minibatches.
    all_data: the data set, replicated.
    shared_num_train: the train size as an int when all runs share it.
    programs: the jitted programs of the mesh.
  """

  def __init__(self, key, data, hparams, model_cfg, cfg, form, mesh: Mesh):
    self.model_cfg, self.cfg, self.form, self.mesh = model_cfg, cfg, form, mesh
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
    self.all_data = distributed.put(data.all, distributed.replicated(mesh))
    sizes = set(hparams["num_train"].tolist())
    self.shared_num_train = sizes.pop() if len(sizes) == 1 else None
    self.programs = _programs(mesh)

  def pad(self, tree: ArrayTree) -> ArrayTree:
    """Host arrays (R, ...) padded and sharded over the mesh (R', ...)."""
    padded = jax.tree.map(lambda x: x[self._rows], tree)
    return distributed.put(padded, distributed.sharded(self.mesh))

  def host(self, tree: ArrayTree) -> ArrayTree:
    """Sharded arrays (R', ...) as host arrays (R, ...); a collective."""
    return jax.tree.map(lambda x: x[: self.num_runs], distributed.fetch(tree))

  def initial(self) -> tuple[TrainState, StopState, np.ndarray]:
    """The initial states, no run stopped, and the step-0 metrics (R, 4)."""
    state, metrics = self.programs.init_runs(
      self.init_keys,
      self.hp,
      self.all_data,
      self.model_cfg,
      self.cfg,
      self.form,
    )
    running = StopState(
      np.zeros(self.num_runs, np.int32), np.full(self.num_runs, -1, np.int32)
    )
    return state, self.pad(running), self.host(metrics)

  def dispatch(self, chunk: int, state: TrainState, stop: StopState) -> tuple:
    """Starts chunk ``chunk`` (asynchronously): ``_run_chunk``'s outputs."""
    return self.programs.run_chunk(
      state,
      stop,
      self.hp,
      self.batch_keys,
      self.all_data,
      np.int32(chunk * self.cfg.chunk_steps),
      self.cfg,
      self.shared_num_train,
      self.form,
    )


def _fingerprint(
  key: PRNGKey,
  data: ModularData,
  model_cfg: ModelConfig,
  cfg: TrainConfig,
  hparams: dict[str, np.ndarray],
) -> str:
  """``persist.fingerprint`` of what determines a ``train`` call's numbers
  (the network's form aside: forms agree up to float rounding)."""
  data_digests = {
    name: persist.array_digest(x) for name, x in data.all._asdict().items()
  }
  return persist.fingerprint(
    {
      "format": STATE_FORMAT,
      "key": {
        "impl": str(jax.random.key_impl(key)),
        "data": jax.random.key_data(key),
      },
      "data": {"num_train": data.num_train, **data_digests},
      "model": dataclasses.asdict(model_cfg),
      "train": dataclasses.asdict(cfg),
      "hparams": hparams,
    }
  )


def _read_npz(path: str, what: str) -> dict:
  """``persist.load_npz`` whose failures name the file (never a silent load)."""
  try:
    return persist.load_npz(path)
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
    raise ValueError(
      f"{path} is unreadable ({type(err).__name__}: {err}): {what}"
    ) from err


class _Resume:
  """The resumable state of one setup in ``out_dir``.

  Each chunk's checkpoints and metrics are a part of ``persist.Parts`` in
  ``train_chunks/`` (which refuses a folder of another setup); the current
  optimisation and stopping state is ``train_state.npz``. Both are stamped
  with the setup's fingerprint, and only the writer process writes them.
  """

  def __init__(self, out_dir: str, fingerprint: str):
    self.out_dir, self.fingerprint = out_dir, fingerprint
    self.state_path = os.path.join(out_dir, STATE_FILE)
    self.chunks = persist.Parts(
      os.path.join(out_dir, CHUNKS_DIR), fingerprint, prefix="chunk"
    )
    self.advice = (
      f"the training state in {out_dir} cannot be resumed; delete "
      f"{self.state_path} and {self.chunks.folder} (remove_saved_state) to "
      "train from scratch"
    )

  def _saved_state(self) -> Optional[dict]:
    """The saved state's arrays, or None if there is none.

    Raises:
      ValueError: naming the file if it is unreadable, or ``out_dir`` if it
        holds the state of another setup (nothing is overwritten).
    """
    if not os.path.exists(self.state_path):
      return None
    saved = _read_npz(self.state_path, self.advice)
    owner = str(saved.pop("fingerprint", "unrecorded"))
    if owner != self.fingerprint:
      raise ValueError(
        f"{self.out_dir!r} holds the training state of another setup "
        f"(fingerprint {owner}, this one is {self.fingerprint}): pass "
        "another out_dir, or delete its "
        f"{STATE_FILE} and {CHUNKS_DIR} (remove_saved_state) to discard "
        "that work"
      )
    return saved

  def _load_chunk(self, chunk: int, template: ArrayTree, metrics_shape):
    """(checkpoints, metrics) of a saved chunk, checked against the state."""
    path = self.chunks.path(chunk)
    try:
      saved = self.chunks.load(chunk)
    except ValueError as err:
      raise ValueError(
        f"{path} is unreadable ({err.__cause__!r}): {self.advice}"
      ) from err
    if saved is None:
      raise ValueError(f"{path} is missing or of another setup: {self.advice}")
    num_leaves = len(jax.tree.leaves(template))
    if saved.get("metrics", np.zeros(0)).shape != metrics_shape or any(
      f"ckpts/{i}" not in saved for i in range(num_leaves)
    ):
      raise ValueError(
        f"{path} does not hold this setup's chunk {chunk} (its arrays "
        f"differ): {self.advice}"
      )
    return persist.tree_from_arrays("ckpts", saved, template), saved["metrics"]

  def restore(self, runs: _Runs, state: TrainState, stop: StopState):
    """Claims the folder and loads what is saved in it.

    Returns:
      (state, stop, checkpoints, metrics): the saved state placed like
      ``runs`` and each saved chunk's host checkpoints and metrics (lists);
      the given ``state`` and ``stop`` and empty lists when nothing is saved.
    """
    saved = self._saved_state()
    if distributed.is_writer():
      self.chunks.claim()
    if saved is None:
      return state, stop, [], []
    state = runs.pad(persist.tree_from_arrays("state", saved, state))
    stop = runs.pad(persist.tree_from_arrays("stop", saved, stop))
    cfg = runs.cfg
    shape = (runs.num_runs, cfg.chunk_steps // cfg.log_every, len(METRIC_NAMES))
    chunks = [
      self._load_chunk(chunk, state.params, shape)
      for chunk in range(int(saved["chunks_done"]))
    ]
    return state, stop, [c for c, _ in chunks], [m for _, m in chunks]

  def save(self, chunk: int, ckpts, metrics, state, stop) -> None:
    """Writes chunk ``chunk``'s outputs, then the state after it (host
    arrays); only on the writer process."""
    if not distributed.is_writer():
      return
    self.chunks.save(
      chunk, {"metrics": metrics, **persist.tree_to_arrays("ckpts", ckpts)}
    )
    persist.save_npz(
      self.state_path,
      {
        "fingerprint": np.array(self.fingerprint),
        "chunks_done": chunk + 1,
        **persist.tree_to_arrays("state", state),
        **persist.tree_to_arrays("stop", stop),
      },
    )


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
  cfg: TrainConfig, done: int, max_chunks: Optional[int]
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
  runs: _Runs,
  state: TrainState,
  stop: StopState,
  chunks: range,
  resume: Optional[_Resume],
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
    if cfg.stop_acc is not None:
      stopped = int(np.sum(stop_host.stop_step >= 0))
      bar.set_postfix(stopped=f"{stopped}/{runs.num_runs}")
    bar.update(1)
    chunk += 1
  bar.close()
  return state, stop_host, ckpts, metrics, timer.rate


def _result(
  cfg: TrainConfig,
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
  return TrainResult(
    checkpoints=checkpoints,
    ckpt_steps=cfg.ckpt_every * np.arange(1, num_ckpts + 1),
    log_steps=cfg.log_every * np.arange(all_metrics.shape[1]),
    metrics={name: all_metrics[..., i] for i, name in enumerate(METRIC_NAMES)},
    hparams=hparams,
    final_params=final_params,
    steps_per_second=steps_per_second,
    stop_step=stop_step,
  )


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
    key: PRNG key, typed (``jax.random.key``) or legacy (``PRNGKey``: the
      same results as the typed key of its data); seed s uses
      ``fold_in(key, s)`` (so seed s of a grid run equals a run with
      ``seed_ids=[s]``, up to float rounding under vmap).
    data: data set (all pairs with the training prefix).
    model_cfg: network configuration (``p`` must match ``data.p``).
    cfg: training configuration.
    seeds: number of seeds (an integer >= 1); they are ``0, ..., seeds - 1``.
    seed_ids: explicit seed numbers used instead of ``range(seeds)`` (distinct,
      >= 0), e.g. ``[s]`` to rerun seed s of a larger run on its own; pass
      ``seeds`` only if it equals ``len(seed_ids)``.
    lrs, weight_decays, num_trains: optional grids, each non-empty (None: the
      config's or the data's value); runs are the product, seed-major. See
      ``resolve_grid`` for the rules.
    out_dir: where the resumable state is kept: after every chunk its
      checkpoints and metrics go to ``train_chunks/chunk_NNNNN.npz`` and the
      current optimisation state to ``train_state.npz`` (each written
      atomically and stamped with the setup's fingerprint; I/O per chunk
      stays constant). A state of the same setup is resumed. A folder that
      holds the state of another setup (or of an older layout) is refused
      with a ValueError naming it, so finished work is never overwritten;
      an unreadable or mismatched file of this setup raises a ValueError
      naming it. Nothing is deleted: ``remove_saved_state`` cleans up.
    max_chunks: stop after this many chunks in this call (for tests of
      resumption); the state stays resumable.
    progress: show a tqdm bar per chunk.
    devices: devices to shard the runs axis over (default: all, of every
      process after ``slt_jax.distributed.initialize``; every process gets
      the full result and only process 0 writes ``out_dir``, which all
      processes must read). Runs are padded to a multiple of the device
      count by repeating the last; results agree with an unsharded run up
      to float rounding (the runs per device change XLA's kernels).
    form: the network's first-layer form (``model.FORMS``; None: the
      backend's default). Not part of the run's identity: results agree up to
      float rounding, and a saved state resumes under either form.

  Returns:
    TrainResult.

  Raises:
    ValueError: naming the argument and value (see ``resolve_grid`` for the
      grids), or the file or folder of a saved state that cannot be resumed.

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
  key = _typed_key(key)
  form = _check_arguments(data, model_cfg, max_chunks, form)
  grid = resolve_grid(
    cfg,
    data,
    seeds=seeds,
    seed_ids=seed_ids,
    lrs=lrs,
    weight_decays=weight_decays,
    num_trains=num_trains,
  )
  hparams = _hparams(grid)
  mesh = distributed.work_mesh(devices)
  runs = _Runs(key, data, hparams, model_cfg, cfg, form, mesh)
  state, stop, metrics0 = runs.initial()

  resume = None
  ckpts, metrics = [], []
  if out_dir:
    resume = _Resume(out_dir, _fingerprint(key, data, model_cfg, cfg, hparams))
    state, stop, ckpts, metrics = resume.restore(runs, state, stop)
  distributed.check_agreement([len(ckpts)], f"the chunks saved in {out_dir}")

  chunks = _chunks_to_run(cfg, len(ckpts), max_chunks)
  state, stop_host, new_ckpts, new_metrics, steps_per_second = _train_chunks(
    runs, state, stop, chunks, resume, progress
  )
  if out_dir:
    distributed.wait_for_writer(f"saving the training state in {out_dir}")
  return _result(
    cfg,
    hparams,
    ckpts + new_ckpts,
    [metrics0[:, None]] + metrics + new_metrics,
    runs.host(state.params),
    steps_per_second,
    stop_host.stop_step,
  )
