"""Beyond the quadratic network: the LLC over training of the authors' three
other architectures on modular addition (an extension: the paper has no
figure of these models to compare with).

The networks are ``slt_jax.grokking.architectures``' (sizes in ``CONFIGS``):
the paper network with ReLU (``relu_net``), the embedding MLP
(``embed_mlp``) and the 2-layer, 1-head transformer (``transformer``). Each
trains through grokking, its seeds in one vmapped program
(``slt_jax.training.train_models``), with checkpoints along training. Then:

1. ``slt_jax.llc.autotune`` chooses the step size, burn-in and chain length
   once per architecture, on two checkpoints of seed 0 (the first LLC point
   at or after memorisation and the last); the modelling choices are fixed
   (nβ = B / ln B with B = 128, 4 chains, γ = ``Setup.localization``: 5
   as the paper for the two MLPs; 1000 for the transformer, whose
   LayerNorm curvature (h_max ~ 1e3-1e5, growing as weight decay shrinks
   the weights) would make γ = 5 chains relax over ~h_max / γ steps, more
   than a CPU affords: at p = 53, γ = 200 needs ~3e5 gradients for
   autotune's first ladder alone);
2. ``estimate_llc`` over the (seeds, checkpoints) batch with the tuned
   chains (draws capped at ``max_draws``): the whole model, each layer alone
   (``layer_patterns``) and, for the transformer, each attention head alone
   (its q/k/v/out weights: ``head_mask``); restricted LLCs move only the
   named weights, the rest stays at the checkpoint.

Reported per architecture (``results.json``): the training curves, the
memorisation (train acc >= 0.99) and generalisation (val acc >= 0.95)
steps, each curve's peak step, final value and drop ratio (final / peak),
whether the whole-model LLC peaks before generalisation and falls
significantly through grokking (peak - final > 2 standard errors of the
seed mean), which layer's restricted LLC drops most, the settled (final)
LLC against the parameter count d (2λ/d), and every (curve, seed,
checkpoint) with a diverged chain. Diverged chains are left out of their
point's estimate by the engine and listed under ``diverged``; a point whose
chains all diverged is nan and drawn as a cross, never averaged in. The
figure ``DIR/architectures.png`` has a column per architecture: losses,
accuracies, the whole-model LLC and the restricted LLCs over training.

    python -m experiments.architectures --quick   # p=23, small widths
    python -m experiments.architectures --paper   # p=53, authors' widths

``--archs relu_net,embed_mlp`` runs a subset. Training resumes from
``DIR/train/``, the tuned configs are kept in ``DIR/chains/tune_KIND.json``
and the chains resume from ``DIR/chains/``; ``--replot`` redraws the figure
from ``results.json``. Modules: ``config`` (the setups per mode),
``measure`` (training, tuning, the curves and their summaries), ``report``
(figure, summary, paper rows).
"""

from __future__ import annotations

from typing import Optional

from experiments import cli
from experiments.architectures.config import (
  CONFIGS,
  NAME,
  ArchitecturesConfig,
  Setup,
  Training,
)
from experiments.architectures.measure import (
  compute,
  curve_masks,
  curve_summary,
  diverged_points,
  llc_indices,
  tune,
  verdict,
)
from experiments.architectures.report import paper_rows, plot, summary
from slt_jax.grokking import architectures as arch_lib

__all__ = [
  "CONFIGS",
  "NAME",
  "ArchitecturesConfig",
  "Setup",
  "Training",
  "add_flags",
  "compute",
  "curve_masks",
  "curve_summary",
  "diverged_points",
  "llc_indices",
  "main",
  "paper_rows",
  "parse_kinds",
  "plot",
  "summary",
  "tune",
  "verdict",
]


def add_flags(parser) -> None:
  """``--archs``: a comma-separated subset of the architectures."""
  parser.add_argument(
    "--archs",
    default=None,
    help=f"comma-separated subset of {','.join(arch_lib.ARCHITECTURES)} "
    "(default: all)",
  )


def parse_kinds(text: Optional[str]) -> Optional[tuple]:
  """The architectures named by ``--archs`` (None: all).

  >>> parse_kinds("transformer,relu_net")
  ('transformer', 'relu_net')
  >>> parse_kinds("cnn")
  Traceback (most recent call last):
  ...
  ValueError: --archs='cnn' is invalid: name some of relu_net, embed_mlp, transformer
  """
  if text is None:
    return None
  kinds = tuple(k.strip() for k in text.split(",") if k.strip())
  if not kinds or not set(kinds) <= set(arch_lib.ARCHITECTURES):
    raise ValueError(
      f"--archs={text!r} is invalid: name some of "
      f"{', '.join(arch_lib.ARCHITECTURES)}"
    )
  return kinds


def main(argv=None) -> dict:
  args, mode = cli.parse_mode(__doc__, add_flags, argv)
  kinds = parse_kinds(args.archs)
  out_dir = cli.output_dir(NAME, args.out)
  results = cli.compute_then_plot(
    NAME,
    args,
    lambda: {
      "mode": mode,
      **compute(CONFIGS[mode], args.seed, out_dir, kinds),
    },
    plot,
  )
  print(summary(results, out_dir))
  return results
