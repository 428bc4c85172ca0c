"""The experiments' front end to the run store (``slt_jax.grokking.runs``).

A trained run is saved once under ``RUNS_DIR`` (``runs/`` at the repository
root, or the folder given with ``--runs``) and loaded by every experiment that
asks for the same run (``trained_run``). ``loss_fn`` hands out one loss object
per name, so the compiled programs that close over it are shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
from typing import Optional, Sequence

from slt_jax.grokking import data as data_lib
from slt_jax.grokking import losses, runs, train
from slt_jax.grokking.config import DataConfig, ModelConfig, TrainConfig

# The store of trained runs: runs/ at the repository root.
RUNS_DIR = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runs"
)


def add_runs_flag(parser: argparse.ArgumentParser) -> None:
  """Adds ``--runs DIR``: the store of trained runs (default ``RUNS_DIR``).

  Pass it as (part of) ``extra`` to ``cli.parse_args``/``cli.parse_mode``
  and hand ``args.runs`` to ``trained_run(..., store=args.runs)``.

  >>> parser = argparse.ArgumentParser()
  >>> add_runs_flag(parser)
  >>> parser.parse_args(["--runs", "elsewhere"]).runs
  'elsewhere'
  """
  parser.add_argument(
    "--runs",
    default=RUNS_DIR,
    metavar="DIR",
    help="store of trained runs: a run found there is loaded, not "
    "retrained; an interrupted training resumes (default: runs/ at "
    "the repository root)",
  )


def trained_run(
  key,
  data,
  model_cfg: ModelConfig,
  train_cfg: TrainConfig,
  *,
  data_key=None,
  seeds: int = 1,
  seed_ids: Optional[Sequence[int]] = None,
  lrs: Optional[Sequence[float]] = None,
  weight_decays: Optional[Sequence[float]] = None,
  num_trains: Optional[Sequence[int]] = None,
  store: Optional[str] = None,
  label: Optional[str] = None,
  max_chunks: Optional[int] = None,
  progress: bool = True,
) -> train.TrainResult:
  """``train.train`` through the run store: load the run, or train and save it.

  The run is fingerprinted by everything that determines it (key, data
  arrays, configs, seeds and grids; see ``slt_jax.grokking.runs``), so every
  experiment asking for the same run shares one trained copy. Training goes
  to ``<store>/<label>-<fingerprint>.partial/`` and resumes from there after
  an interruption; the finished run is published atomically. A corrupt
  stored run raises a ValueError naming the file (delete its directory to
  retrain).

  Args:
    key: the training key (as for ``train.train``).
    data: the ``ModularData``, or its ``DataConfig`` (then ``data_key``, the
      key the split is drawn with, is required and the data are built here).
    model_cfg, train_cfg: as for ``train.train``.
    data_key: the data's key; recorded in the manifest (the fingerprint
      hashes the data arrays themselves).
    seeds, seed_ids, lrs, weight_decays, num_trains: as for ``train.train``.
    store: the store folder (default ``RUNS_DIR``, i.e. ``runs/``).
    label: readable directory name (default ``p{p}_K{width}``).
    max_chunks: passed to ``train.train`` (a run cut short is not published).
    progress: show training progress.

  Returns:
    The TrainResult.
  """
  provenance = {}
  if isinstance(data, DataConfig):
    if data_key is None:
      raise ValueError(
        "data is a DataConfig: pass data_key, the key its "
        "split is drawn with (or pass the ModularData)"
      )
    provenance["data_config"] = dataclasses.asdict(data)
    data = data_lib.modular_arithmetic(data_key, data)
  if data_key is not None:
    provenance["data_key"] = runs.key_spec(data_key)
  if label is None:
    label = f"p{model_cfg.p}_K{model_cfg.width}"
  return runs.get_or_train(
    store or RUNS_DIR,
    label,
    key,
    data,
    model_cfg,
    train_cfg,
    seeds=seeds,
    seed_ids=seed_ids,
    lrs=lrs,
    weight_decays=weight_decays,
    num_trains=num_trains,
    provenance=provenance,
    max_chunks=max_chunks,
    progress=progress,
  )


@functools.lru_cache(maxsize=None)
def loss_fn(name: str):
  """``losses.make_loss(name)``, one object per name.

  >>> loss_fn("mse") is loss_fn("mse")
  True
  """
  return losses.make_loss(name)
