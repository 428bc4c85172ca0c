"""Finding the memorising and the generalising basin of each cell.

A cell is a modulus M and a train size N of the sweep, seed 0. Its basins:

* ``memorisation_checkpoint``: the checkpoint at the first logged step with
  train accuracy 1 (``config.INTERPOLATES_ACC``), from a re-run of the cell
  with a checkpoint at every logged step (the sweep's run keeps one every
  500); memorising when its validation accuracy is below
  ``config.MEMORISING_VAL_ACC``.
* ``final_point``: the last parameters of a run that never generalises
  (memorising).
* ``grokked_checkpoint``: the parameters at the early stop of a run that
  generalises (generalising).
* ``superset_finetune``: for a cell that does not generalise, the grokked
  checkpoint of the smallest larger cell of the same modulus that does (its
  training set contains this one: splits are prefixes of one permutation),
  fine-tuned on this set; kept only if it interpolates this set with a
  training loss at most ``config.COMPARABLE_LOSS_FACTOR`` times the
  memorising basin's.

Every basin is evaluated on this cell's split: training loss (centred MSE),
validation loss and both accuracies; its parameter norm is recorded too.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax
import numpy as np

from experiments import regimes
from experiments.basin_selection import config
from slt_jax import training
from slt_jax.grokking import data as data_lib
from slt_jax.grokking import grokking_metrics, model, train
from slt_jax.grokking.config import DataConfig, ModelConfig
from slt_jax.tree_types import ArrayTree

MEMORISING, GENERALISING = "memorising", "generalising"


class Basin(NamedTuple):
  """One point of a cell.

  Attributes:
    source: ``memorisation_checkpoint``, ``final_point``,
      ``grokked_checkpoint`` or ``superset_finetune``.
    kind: ``memorising`` or ``generalising``.
    step: training step of the parameters (fine-tuned: of the superset's
      grokked checkpoint).
    params: the parameters of one network.
    metrics: ``train_loss``, ``val_loss``, ``train_acc``, ``val_acc`` on
      this cell's split, and ``param_norm`` (the parameters' Euclidean
      norm).
    kept: whether the basin enters the comparison (it interpolates this
      set; for a fine-tuned one also with a comparable loss).
    note: how it was found (JSON-able).
  """

  source: str
  kind: str
  step: int
  params: ArrayTree
  metrics: dict
  kept: bool
  note: dict


class Cell(NamedTuple):
  """A cell's data, runs, observed regimes and basins.

  Attributes:
    modulus: M.
    num_train: N.
    data: all M² pairs, this cell's training set first.
    run: the sweep's run (R seeds; seed 0 is used).
    dense: the re-run of seed 0 with a checkpoint at every logged step.
    regimes: budget (str) -> the authors' regime name of seed 0.
    basins: the basins found so far.
  """

  modulus: int
  num_train: int
  data: data_lib.ModularData
  run: train.TrainResult
  dense: train.TrainResult
  regimes: dict
  basins: list

  @property
  def generalised(self) -> bool:
    """Whether seed 0 generalised within the sweep's length (the authors'
    rule at the largest budget: final validation accuracy >= 0.90)."""
    return self.regimes[max(self.regimes, key=int)] != "none"


def evaluate(params: ArrayTree, data: data_lib.ModularData, n: int) -> dict:
  """Training and validation loss (centred MSE) and accuracy of one network
  with the first ``n`` pairs of ``data`` as the training set."""
  values = train.evaluate(params, data.all, n, "centered_mse")
  return dict(zip(train.METRIC_NAMES, map(float, values)))


def _seed0(tree: ArrayTree) -> ArrayTree:
  return jax.tree.map(lambda x: x[0], tree)


def _trained(keys, m: int, n: int, sweep, runs_dir, label: str, progress):
  """A run of cell (m, n) through ``regimes``' run store path."""
  return regimes._trained(*keys, m, sweep, runs_dir, label, [n], progress)


def load_cell(
  cfg: config.BasinConfig, keys, m: int, n: int, runs_dir, progress: bool
) -> Cell:
  """The cell's sweep run (from the store if ``regimes`` trained it), its
  dense re-run, its regimes and its trained basins."""
  width = cfg.sweep.width
  run = _trained(
    keys,
    m,
    n,
    cfg.sweep,
    runs_dir,
    f"regimes_authors_M{m}_N{n}_K{width}",
    progress,
  )
  dense = _trained(
    keys,
    m,
    n,
    cfg.dense_sweep(),
    runs_dir,
    f"basin_dense_M{m}_N{n}_K{width}",
    progress,
  )
  data = data_lib.modular_arithmetic(
    jax.random.fold_in(keys[0], m), DataConfig(p=m)
  )._replace(num_train=n)
  acc = run.metrics
  observed = {
    str(b): regimes.REGIMES[
      regimes.classify_authors(
        run.log_steps, acc["train_acc"][0], acc["val_acc"][0], b
      )[0]
    ]
    for b in cfg.sweep.budgets
  }
  cell = Cell(m, n, data, run, dense, observed, [])
  cell.basins.extend(trained_basins(cell))
  return cell


def dense_mismatch(cell: Cell) -> float:
  """Largest |difference| of the logged training loss between the dense
  re-run and the sweep's run of seed 0 over their common steps (0: the
  same trajectory)."""
  common = min(len(cell.dense.log_steps), len(cell.run.log_steps))
  a = cell.dense.metrics["train_loss"][0, :common]
  b = cell.run.metrics["train_loss"][0, :common]
  return float(np.max(np.abs(a - b)))


def memorisation_step(cell: Cell) -> int:
  """First logged step of the dense re-run with train accuracy 1 (-1 if
  none within it)."""
  return int(
    grokking_metrics.first_step_at_least(
      cell.dense.log_steps,
      cell.dense.metrics["train_acc"][0],
      config.INTERPOLATES_ACC,
    )
  )


def _basin(cell: Cell, source, kind, step, params, note) -> Basin:
  metrics = evaluate(params, cell.data, cell.num_train)
  metrics["param_norm"] = float(
    np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree.leaves(params)))
  )
  kept = metrics["train_acc"] >= config.INTERPOLATES_ACC
  return Basin(source, kind, int(step), params, metrics, bool(kept), note)


def trained_basins(cell: Cell) -> list[Basin]:
  """The basins the cell's own training reached (see the module doc)."""
  found = []
  step = memorisation_step(cell)
  if step > 0:
    index = int(np.flatnonzero(cell.dense.ckpt_steps == step)[0])
    params = _seed0(jax.tree.map(lambda x: x[:, index], cell.dense.checkpoints))
    basin = _basin(
      cell, "memorisation_checkpoint", MEMORISING, step, params, {}
    )
    if basin.metrics["val_acc"] < config.MEMORISING_VAL_ACC:
      found.append(basin)
  final = _seed0(cell.run.final_params)
  if cell.generalised:
    stop = int(cell.run.stop_step[0])
    step = stop if stop >= 0 else int(cell.run.log_steps[-1])
    found.append(
      _basin(cell, "grokked_checkpoint", GENERALISING, step, final, {})
    )
  else:
    step = int(cell.run.log_steps[-1])
    basin = _basin(cell, "final_point", MEMORISING, step, final, {})
    if basin.metrics["val_acc"] < config.MEMORISING_VAL_ACC:
      found.append(basin)
  return found


def finetune(
  key, params: ArrayTree, cell: Cell, cfg: config.BasinConfig
) -> ArrayTree:
  """``params`` trained ``cfg.finetune_steps`` more steps on the cell's
  training set (Adam at ``cfg.finetune_lr``, fresh state, the sweep's
  coupled L2, batch and loss; no stopping rule)."""
  sweep_train = cfg.sweep.train_config()
  steps = cfg.finetune_steps
  loop = dataclasses.replace(
    sweep_train,
    lr=cfg.finetune_lr,
    num_steps=steps,
    log_every=steps,
    ckpt_every=steps,
    chunk_steps=steps,
    stop_acc=None,
  ).loop()
  network = train.QuadraticTask(
    ModelConfig(p=cell.modulus, width=cfg.sweep.width),
    sweep_train.loss,
    model.default_form(),
  )
  task = training.Task(
    init=lambda _: params,
    loss=network.loss,
    metrics=network.metrics,
    metric_names=network.metric_names,
  )
  result = training.train_models(
    key, task, cell.data.all, loop, num_train=cell.num_train, progress=False
  )
  return _seed0(result.final_params)


def _superset(cell: Cell, cells: list[Cell]) -> Optional[Cell]:
  """The smallest larger cell of the same modulus that generalised."""
  larger = [
    c
    for c in cells
    if c.modulus == cell.modulus
    and c.num_train > cell.num_train
    and c.generalised
  ]
  return min(larger, key=lambda c: c.num_train, default=None)


def superset_basin(
  key, cell: Cell, cells: list[Cell], cfg: config.BasinConfig
) -> Optional[Basin]:
  """The generalising basin of a cell that does not generalise, reached
  from a larger cell's grokked checkpoint (None if no larger cell of the
  modulus generalised)."""
  source = _superset(cell, cells)
  if source is None:
    return None
  start = next(b for b in source.basins if b.source == "grokked_checkpoint")
  before = evaluate(start.params, cell.data, cell.num_train)
  params = finetune(key, start.params, cell, cfg)
  outside = evaluate(params, cell.data, source.num_train)["val_acc"]
  basin = _basin(
    cell,
    "superset_finetune",
    GENERALISING,
    start.step,
    params,
    {
      "superset_num_train": source.num_train,
      "train_loss_before_finetune": before["train_loss"],
      "train_acc_before_finetune": before["train_acc"],
      "val_acc_outside_superset": outside,
    },
  )
  mem_losses = [
    b.metrics["train_loss"] for b in cell.basins if b.kind == MEMORISING
  ]
  limit = config.COMPARABLE_LOSS_FACTOR * max(mem_losses, default=np.inf)
  comparable = basin.metrics["train_loss"] <= limit
  basin.note["loss_comparable"] = bool(comparable)
  return basin._replace(kept=basin.kept and bool(comparable))


def cell_key(seed: int, cell: Cell, purpose: int):
  """The key of one use (``purpose``: 1 fine-tuning, 2 the LLC) of a cell's
  randomness, from the root ``seed``."""
  key = jax.random.fold_in(jax.random.key(seed), purpose)
  return jax.random.fold_in(key, cell.modulus * 100_003 + cell.num_train)


def find_cells(
  cfg: config.BasinConfig, seed: int, runs_dir, progress: bool = True
) -> list[Cell]:
  """Every cell of ``cfg`` with its basins (a superset fine-tune added to
  each cell that does not generalise)."""
  keys = jax.random.split(jax.random.key(seed))
  cells = [
    load_cell(cfg, keys, m, n, runs_dir, progress) for m, n in cfg.cells()
  ]
  for cell in cells:
    if not cell.generalised:
      basin = superset_basin(cell_key(seed, cell, 1), cell, cells, cfg)
      if basin is not None:
        cell.basins.append(basin)
  return cells
