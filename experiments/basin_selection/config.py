"""The basin-selection study's modes, thresholds and conventions.

Every mode studies cells (modulus M, train size N) of the Fig. 14 grid under
the authors' protocol (``experiments.regimes``: Adam lr 0.01, coupled L2
1e-5, batch 64, stop after 3 validation accuracies >= 0.95). ``default`` and
``paper`` take their trained runs from the run store that ``regimes``
fills (``default``: its 5,000-step sweep, ``paper``: its 15,000-step one),
both on the subset M in {53, 79} x fractions {0.1, 0.15, 0.3, 0.4, 0.9}
(``SUBSET_MODULI``, ``SUBSET_FRACTIONS``); ``quick`` and ``smoke`` train
small moduli of their own.
"""

from __future__ import annotations

import dataclasses
import math

from experiments import regimes
from slt_jax.llc.config import PAPER_SGLD, SGLDConfig

# A basin interpolates the training set: every training pair classified
# right.
INTERPOLATES_ACC = 1.0
# A memorisation checkpoint counts as memorising below this validation
# accuracy (above it the run was already generalising when it memorised).
MEMORISING_VAL_ACC = 0.5
# A run generalised: final validation accuracy at least the authors' 0.90.
GENERALISED_ACC = regimes.FINAL_ACC_NONE
# A generalising solution found another way is kept when its training loss
# on this set is at most this many times the memorising basin's.
COMPARABLE_LOSS_FACTOR = 10.0
# The two nβ conventions: devinterp's default B / ln B (B the SGLD
# minibatch) and Watanabe's WBIC temperature n / ln n.
CONVENTIONS = {"default": "default", "wbic": "n_log_n"}


@dataclasses.dataclass(frozen=True)
class BasinConfig:
  """One mode of the study.

  Attributes:
    sweep: the authors'-protocol sweep whose cells are studied (its moduli,
      fractions and training); seed 0 of each cell is used.
    dense_steps: length of the re-run of each cell with a checkpoint at
      every logged step, which holds the memorisation checkpoint (the same
      key and settings as the sweep's run, so the same trajectory).
    finetune_lr: Adam learning rate of the fine-tuning on this set (coupled
      L2 and batch as the sweep's).
    finetune_steps: fine-tuning steps.
    sgld: the modelling choices of the LLC (sampler, γ, SGLD minibatch, nβ
      convention ``default``) and the paper window (its eps and lengths).
    tolerance: ``autotune``'s bound on the relative discretisation bias.
    max_rhat: ``autotune``'s largest accepted split R-hat.
    min_ess: ``autotune``'s smallest accepted ESS.
    budget_grads: gradient evaluations per ``autotune`` call.
    wbic_moduli: moduli whose boundary cells (the last that does not
      generalise and the first that does) are also measured at nβ = n / ln n.
  """

  sweep: regimes.RegimesConfig
  dense_steps: int
  finetune_lr: float = 1e-4
  finetune_steps: int = 1000
  sgld: SGLDConfig = dataclasses.replace(PAPER_SGLD, batch_size=64)
  tolerance: float = 0.15
  max_rhat: float = 1.05
  min_ess: float = 100.0
  budget_grads: int = 400_000
  wbic_moduli: tuple[int, ...] = ()

  def __post_init__(self):
    if self.sweep.protocol != "authors":
      raise ValueError(
        f"sweep.protocol={self.sweep.protocol!r} is invalid: the study "
        "uses the authors' protocol"
      )
    if self.dense_steps % self.sweep.log_every:
      raise ValueError(
        f"dense_steps={self.dense_steps} is invalid: must be a multiple of "
        f"sweep.log_every={self.sweep.log_every}"
      )
    unknown = set(self.wbic_moduli) - set(self.sweep.moduli)
    if unknown:
      raise ValueError(
        f"wbic_moduli={self.wbic_moduli} is invalid: {sorted(unknown)} not "
        f"in sweep.moduli={self.sweep.moduli}"
      )

  def cells(self) -> list[tuple[int, int]]:
    """(M, N) of every cell, by modulus then train size (N = round(f M²)).

    >>> CONFIGS["paper"].cells()[:2]
    [(53, 281), (53, 421)]
    """
    return [
      (m, int(round(f * m * m)))
      for m in self.sweep.moduli
      for f in sorted(self.sweep.fractions)
    ]

  def dense_sweep(self) -> regimes.RegimesConfig:
    """The sweep's settings for the dense re-run: seed 0 alone, a
    checkpoint at every logged step, ``dense_steps`` long."""
    return dataclasses.replace(
      self.sweep,
      seeds=1,
      num_steps=self.dense_steps,
      chunk_steps=self.sweep.log_every,
      budgets=(),
    )


def x_of(m: int, n: int) -> float:
  """The Fig. 14 abscissa N / (M ln M).

  >>> round(x_of(53, 843), 2)
  4.01
  """
  return n / (m * math.log(m))


# The subset of the grid for CPU time: two moduli on both sides of the
# boundary, every fraction but 0.95 (like 0.9, immediate generalisation, at
# an x within 6% of it).
SUBSET_MODULI = (53, 79)
SUBSET_FRACTIONS = (0.1, 0.15, 0.3, 0.4, 0.9)
_SMALL = dict(
  protocol="authors",
  seeds=1,
  log_every=100,
  lr=1e-2,
  stop_acc=0.95,
)
CONFIGS = {
  # p = 11, K = 128, lr 3e-2: 0.3 memorises and never generalises in 600
  # steps, 0.8 memorises at step 100, then generalises.
  "smoke": BasinConfig(
    regimes.RegimesConfig(
      moduli=(11,),
      fractions=(0.3, 0.8),
      width=128,
      num_steps=600,
      chunk_steps=300,
      batch_size=16,
      budgets=(600,),
      **(_SMALL | {"lr": 3e-2}),
    ),
    dense_steps=300,
    finetune_steps=200,
    sgld=dataclasses.replace(PAPER_SGLD, batch_size=16),
    tolerance=0.5,
    max_rhat=1.1,
    budget_grads=20_000,
  ),
  # p = 23, K = 256: 0.3 never generalises in 3,000 steps, 0.6 memorises
  # at step 100 and groks, 0.9 generalises immediately.
  "quick": BasinConfig(
    regimes.RegimesConfig(
      moduli=(23,),
      fractions=(0.3, 0.6, 0.9),
      width=256,
      num_steps=3000,
      chunk_steps=500,
      batch_size=32,
      budgets=(3000,),
      **_SMALL,
    ),
    dense_steps=500,
    tolerance=0.25,
    budget_grads=100_000,
  ),
  "default": BasinConfig(
    dataclasses.replace(
      regimes.CONFIGS["authors"]["quick"], fractions=SUBSET_FRACTIONS
    ),
    dense_steps=1000,
    budget_grads=150_000,
    wbic_moduli=(53,),
  ),
  "paper": BasinConfig(
    dataclasses.replace(
      regimes.CONFIGS["authors"]["paper"],
      moduli=SUBSET_MODULI,
      fractions=SUBSET_FRACTIONS,
    ),
    dense_steps=1000,
    budget_grads=150_000,
    wbic_moduli=(53,),
  ),
}
