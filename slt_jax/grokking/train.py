"""Training many runs of the quadratic network as one compiled program.

A thin wrapper of the generic trainer ``slt_jax.training``: it supplies the
network's task (``QuadraticTask``: ``model.init``, the loss of
``TrainConfig.loss``, and ``evaluate``'s loss and accuracy on the train
prefix and validation rest), turns ``TrainConfig`` into the loop's
``LoopConfig`` (``stop_acc`` is a stopping rule on ``val_acc``) and names a
saved state by the data, ``ModelConfig`` and ``TrainConfig``. Everything
else is the generic trainer's: the per-run optax chain with traced lr and
weight decay, the vmap over seeds × (lr, weight decay, train size), the
nested ``lax.scan``, per-run early stopping (a stopped run's parameters and
optimizer state freeze while the others go on), chunked resumption through
``slt_jax.persist`` (bit-identical to an uninterrupted run) and sharding.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from slt_jax import persist, training
from slt_jax.checks import check
from slt_jax.grokking import losses, model
from slt_jax.grokking.config import ModelConfig, TrainConfig
from slt_jax.grokking.data import Batch, ModularData
from slt_jax.training.resume import CHUNKS_DIR, STATE_FILE
from slt_jax.tree_types import ArrayTree, PRNGKey

__all__ = [
  "METRIC_NAMES",
  "STATE_FILE",
  "CHUNKS_DIR",
  "TrainResult",
  "QuadraticTask",
  "evaluate",
  "make_optimizer",
  "remove_saved_state",
  "resolve_grid",
  "train",
]

METRIC_NAMES = ("train_loss", "val_loss", "train_acc", "val_acc")
TrainResult = training.TrainResult
make_optimizer = training.make_optimizer
remove_saved_state = training.remove_saved_state


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


@dataclasses.dataclass(frozen=True)
class QuadraticTask:
  """The quadratic network as a ``slt_jax.training.Task``.

  Hashable and equal for equal fields, so calls of one setup share their
  compiled programs.

  Attributes:
    model_cfg: the network.
    loss_name: the training loss (``TrainConfig.loss``).
    form: the network's first-layer form (``model.FORMS``).
  """

  model_cfg: ModelConfig
  loss_name: str
  form: str
  metric_names = METRIC_NAMES

  def init(self, key: PRNGKey) -> ArrayTree:
    """``model.init`` of one run."""
    return model.init(key, self.model_cfg)

  def loss(self, params: ArrayTree, batch: Batch) -> jax.Array:
    """The training loss on a minibatch."""
    return losses.make_loss(self.loss_name, self.form)(params, batch)

  def metrics(
    self, params: ArrayTree, all_data: Batch, num_train: jax.Array
  ) -> jax.Array:
    """``evaluate``: (4,) ordered as ``METRIC_NAMES``."""
    return evaluate(params, all_data, num_train, self.loss_name, self.form)


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
  return training.resolve_grid(
    cfg.loop(),
    int(data.all.labels.shape[0]),
    data.num_train,
    seeds=seeds,
    seed_ids=seed_ids,
    lrs=lrs,
    weight_decays=weight_decays,
    num_trains=num_trains,
  )


def _check_arguments(
  data: ModularData, model_cfg: ModelConfig, form: Optional[str]
) -> str:
  """Checks ``train``'s network arguments; returns the network's form."""
  if model_cfg.p != data.p:
    raise ValueError(f"model p={model_cfg.p} does not match data p={data.p}")
  form = model.default_form() if form is None else form
  check(form in model.FORMS, "form", form, f"must be one of {model.FORMS}")
  return form


def _spec(data: ModularData, model_cfg: ModelConfig, cfg: TrainConfig) -> dict:
  """What names a saved state besides the key and the runs: the data, the
  network and ``cfg`` (the network's form aside: forms agree up to float
  rounding)."""
  data_digests = {
    name: persist.array_digest(x) for name, x in data.all._asdict().items()
  }
  return {
    "data": {"num_train": data.num_train, **data_digests},
    "model": dataclasses.asdict(model_cfg),
    "train": dataclasses.asdict(cfg),
  }


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
  form = _check_arguments(data, model_cfg, form)
  return training.train_models(
    key,
    QuadraticTask(model_cfg, cfg.loss, form),
    data.all,
    cfg.loop(),
    num_train=data.num_train,
    seeds=seeds,
    seed_ids=seed_ids,
    lrs=lrs,
    weight_decays=weight_decays,
    num_trains=num_trains,
    out_dir=out_dir,
    spec=_spec(data, model_cfg, cfg) if out_dir else None,
    max_chunks=max_chunks,
    progress=progress,
    devices=devices,
  )
