"""The Fig. 3 run: the p = 53, K = 1024 network trained through grokking.

``llc_over_training`` (Fig. 3 itself) and every study of the same network
(``llc_by_layer``, ``robustness``, ``llc_gap``, ``llc_conventions``,
``influence_through_grokking``, ``sampler_efficiency``) take it from here:
``CONFIGS[mode]`` sizes it, ``run`` loads it from the run store (training it
the first time), so each (config, protocol, seed) is trained once for all of
them. Its two protocols, ``recipe`` and ``authors`` (the Fig. 3 caption), are
``protocols.fig3_protocol``.
"""

from __future__ import annotations

import dataclasses

import jax

from experiments import protocols, store
from slt_jax.grokking import data as data_lib
from slt_jax.grokking.config import DataConfig, ModelConfig, TrainConfig
from slt_jax.llc.config import PAPER_SGLD, SETTLED_SGLD, SGLDConfig


@dataclasses.dataclass(frozen=True)
class Fig3Config:
  """The Fig. 3 run and its two LLC sweeps.

  Attributes:
    data: the train/validation split.
    model: the network.
    recipe: training under the ``recipe`` protocol.
    authors: training under the ``authors`` protocol (the Fig. 3 caption).
    seeds: training seeds (one count per mode, so every experiment that uses
      this config shares one stored run).
    sgld: the paper's SGLD window, run at every checkpoint.
    settled: chains long enough to settle, run at every checkpoint whose step
      is a multiple of ``settled_every``.
    settled_every: steps between the checkpoints of the settled sweep.
    tune_budget_grads: ``autotune``'s gradient budget for the tuned sweep
      (the settled sweep's checkpoints, at ``sgld``'s nβ, γ and minibatch;
      0: no tuned sweep).
    tune_tolerance: ``autotune``'s bound on the relative discretisation bias.
    default_protocols: the protocols run when ``--protocol`` is not given.
  """

  data: DataConfig
  model: ModelConfig
  recipe: TrainConfig
  authors: TrainConfig
  seeds: int
  sgld: SGLDConfig = PAPER_SGLD
  settled: SGLDConfig = SETTLED_SGLD
  settled_every: int = 1000
  tune_budget_grads: int = 1_000_000
  tune_tolerance: float = 0.05
  default_protocols: tuple[str, ...] = ("recipe",)

  def protocol(self, name: str) -> protocols.Protocol:
    """``protocols.fig3_protocol(name)`` at this config's size: trained with
    ``self.recipe`` or ``self.authors``, sampled with ``self.sgld`` and
    ``self.settled``.

    Raises:
      ValueError: if ``name`` is not ``recipe`` or ``authors``.
    """
    return dataclasses.replace(
      protocols.fig3_protocol(name),
      train=getattr(self, name),
      sgld=self.sgld,
      settled=self.settled,
    )


_DATA, _MODEL = DataConfig(p=53), ModelConfig(p=53, width=1024)
_RECIPE = protocols.fig3_protocol("recipe").train
_CAPTION = protocols.fig3_protocol("authors").train
_TINY = dict(
  batch_size=16, num_steps=200, log_every=20, ckpt_every=100, chunk_steps=200
)

CONFIGS = {
  "smoke": Fig3Config(
    DataConfig(p=11, train_frac=0.5),
    ModelConfig(p=11, width=32),
    recipe=dataclasses.replace(_RECIPE, **_TINY),
    authors=dataclasses.replace(_CAPTION, **_TINY),
    seeds=1,
    sgld=dataclasses.replace(
      PAPER_SGLD, num_draws=20, num_burnin=5, batch_size=16
    ),
    settled=dataclasses.replace(
      PAPER_SGLD, num_draws=40, num_burnin=10, batch_size=16
    ),
    settled_every=200,
    tune_budget_grads=20_000,
    tune_tolerance=0.5,
  ),
  "quick": Fig3Config(_DATA, _MODEL, recipe=_RECIPE, authors=_CAPTION, seeds=1),
  "default": Fig3Config(
    _DATA,
    _MODEL,
    recipe=dataclasses.replace(_RECIPE, num_steps=10000),
    authors=_CAPTION,
    seeds=3,
  ),
  # One seed, as the authors used; the recipe run is the quick one.
  "paper": Fig3Config(
    _DATA,
    _MODEL,
    recipe=_RECIPE,
    authors=_CAPTION,
    seeds=1,
    default_protocols=protocols.NAMES,
  ),
}


def keys(seed: int) -> jax.Array:
  """The four keys of ``seed``: the split's, the training's, then two for
  the chains of whichever experiment studies the run.

  Args:
    seed: root seed.

  Returns:
    (4,) PRNG keys.

  >>> keys(0).shape
  (4,)
  """
  return jax.random.split(jax.random.key(seed), 4)


def run(cfg: Fig3Config, protocol: str, seed: int, runs_dir):
  """The Fig. 3 run of ``protocol``, from the run store (trained if absent).

  Every experiment asking for the same (config, protocol, seed) gets the
  same stored run.

  Args:
    cfg: the Fig. 3 config of a mode (``CONFIGS[mode]``).
    protocol: ``recipe`` or ``authors``.
    seed: root seed (see ``keys``).
    runs_dir: run store folder (None: the default ``store.RUNS_DIR``).

  Returns:
    (TrainResult, ModularData).
  """
  key_data, key_train = keys(seed)[:2]
  data = data_lib.modular_arithmetic(key_data, cfg.data)
  trained = store.trained_run(
    key_train,
    data,
    cfg.model,
    cfg.protocol(protocol).train,
    data_key=key_data,
    seeds=cfg.seeds,
    store=runs_dir,
    label=f"fig3_{protocol}_p{cfg.model.p}_K{cfg.model.width}",
  )
  return trained, data
