"""RMSprop-SGLD's preconditioner along a chain, against what autotune assumes.

RMSprop-SGLD scales the step of coordinate i by ``G_i = 1 / (delta +
sqrt(V_i))``, V the running mean of the squared minibatch loss gradient, so
the localization relaxes coordinate i in ``2 / (eps G_i γ)`` steps.
``slt_jax.llc.autotune`` sizes every ladder by the smallest G the run
before measured (``ChainDiagnostics.step_scale``, the last step's): a short
pilot run before the first ladder, the ladder before after that (before the
pilot it took G = 1). This experiment, the independent check of that
measurement, runs one RMSprop-SGLD chain (``slt_jax.samplers.sgld``) at the
step autotune chose in a ``experiments.dln_benchmark`` row, on that row's
network and data, and records G's quantiles over the coordinates at
``segments`` checkpoints, with ``|w - w*|^2``; ``relaxation_ratio`` is the
smallest G over the second half of the checkpoints, the factor by which
``2 / (eps γ)`` (G = 1) overstates the slowest coordinate's relaxation
there.
No figure; ``--replot`` reprints the table.

    python -m experiments.rmsprop_preconditioner [--quick] [--out DIR]
      [--rows figures/dln_benchmark/default] [--nets 11 16 14]

About 5 minutes on one CPU core (three rows, 20,000 steps each);
``--quick`` runs 2,000 steps of the smallest row of ``--rows``.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from experiments import cli
from slt_jax import known_cases, persist
from slt_jax.samplers import sgld

NAME = "rmsprop_preconditioner"
QUANTILES = (0.0, 0.01, 0.5, 0.99, 1.0)


def probe(key, case, step_size: float, batch_size: int, steps: int, segments):
  """G's quantiles and ``|w - w*|^2`` at ``segments`` checkpoints of one
  RMSprop-SGLD chain started at w* (``case``: a known case of
  ``slt_jax.known_cases`` with ``data`` a dict of arrays, example axis
  first; its cfg gives nβ, γ and the RMSprop decay and delta).

  Returns:
    list of ``{"step", "G_quantiles", "distance_sq"}``, ``G_quantiles`` at
    ``QUANTILES`` over the coordinates.
  """
  cfg = case.cfg
  num_examples = len(jax.tree.leaves(case.data)[0])
  kernel = sgld.build_kernel(
    case.loss_fn, rmsprop=(cfg.rmsprop_decay, cfg.rmsprop_eps)
  )
  settings = sgld.SGLDSettings(
    step_size, cfg.resolve_nbeta(num_examples), cfg.localization
  )

  def step(state, step_key):
    batch_key, noise_key = jax.random.split(step_key)
    index = jax.random.choice(
      batch_key, num_examples, (batch_size,), replace=False
    )
    batch = jax.tree.map(lambda x: x[index], case.data)
    return kernel(noise_key, state, batch, settings)[0], None

  @functools.partial(jax.jit, static_argnums=2)
  def run(state, run_key, num):
    return jax.lax.scan(step, state, jax.random.split(run_key, num))[0]

  delta = cfg.rmsprop_eps
  state = sgld.init(case.params, preconditioned=True)
  w_star = ravel_pytree(case.params)[0]
  out = []
  for i in range(segments):
    state = run(state, jax.random.fold_in(key, i), steps // segments)
    g = ravel_pytree(sgld.preconditioner(state.second_moment, delta))[0]
    offset = ravel_pytree(state.position)[0] - w_star
    out.append(
      {
        "step": (i + 1) * (steps // segments),
        "G_quantiles": np.quantile(np.asarray(g), QUANTILES).tolist(),
        "distance_sq": float(offset @ offset),
      }
    )
  return out


def rebuild(rows_dir: str, bench: dict, index: int) -> tuple:
  """(the saved ``dln_benchmark`` RMSprop-SGLD row of network ``index``, its
  known case), the case rebuilt from the benchmark's config and seed as the
  benchmark builds it."""
  path = os.path.join(rows_dir, "rows", f"net{index:02d}_rmsprop_sgld.json")
  row = persist.load_json(path)["row"]
  cfg = bench["config"]
  case = known_cases.deep_linear(
    jax.random.fold_in(jax.random.key(bench["seed"]), index),
    tuple(row["widths"]),
    row["rank"],
    cfg["num_examples"],
    noise_std=0.0,
    localization=cfg["localization"],
  )
  return row, case


def compute(rows_dir: str, nets, steps: int, segments: int, seed: int):
  """Every requested row's checkpoints and ``relaxation_ratio``."""
  bench = persist.load_json(os.path.join(rows_dir, "results.json"))
  out = []
  for index in nets:
    saved, case = rebuild(rows_dir, bench, index)
    checkpoints = probe(
      jax.random.fold_in(jax.random.key(seed), index),
      case,
      saved["step_size"],
      bench["config"]["batch_size"],
      steps,
      segments,
    )
    out.append(
      {
        "net": index,
        "num_params": saved["num_params"],
        "step_size": saved["step_size"],
        "num_burnin": saved["num_burnin"],
        "localization": case.cfg.localization,
        "delta": case.cfg.rmsprop_eps,
        "checkpoints": checkpoints,
        "relaxation_ratio": min(
          c["G_quantiles"][0] for c in checkpoints[segments // 2 :]
        ),
      }
    )
    print(_text(out[-1]), flush=True)
  return {
    "name": NAME,
    "rows_dir": rows_dir,
    "steps": steps,
    "quantiles": list(QUANTILES),
    "rows": out,
  }


def _text(row: dict) -> str:
  last = row["checkpoints"][-1]["G_quantiles"]
  return (
    f"net{row['net']:02d} d={row['num_params']:,} eps={row['step_size']:.3g}:"
    f" G min {last[0]:.2f}, median {last[2]:.2f}, max {last[-1]:.2f}"
    f" (1/delta = {1 / row['delta']:.0f}); 2/(eps γ) overstates the slowest"
    f" relaxation {row['relaxation_ratio']:.1f}x"
  )


def reprint(results: dict, out_dir: str) -> None:
  """Prints the table of ``results`` (no figure)."""
  del out_dir
  for row in results["rows"]:
    print(_text(row))


def main(argv=None) -> dict:
  def add(parser):
    parser.add_argument("--rows", default="figures/dln_benchmark/default")
    parser.add_argument("--nets", type=int, nargs="+", default=[11, 16, 14])

  args = cli.parse_args(__doc__, add, argv)
  if args.quick:
    bench = persist.load_json(os.path.join(args.rows, "results.json"))
    done = {r["index"] for r in bench["rows"] if r["sampler"] == "rmsprop_sgld"}
    nets, steps = [min(done, key=lambda i: _size(bench, i))], 2_000
  else:
    nets, steps = args.nets, 20_000
  return cli.compute_then_plot(
    NAME,
    args,
    lambda: compute(args.rows, nets, steps, 4, args.seed),
    reprint,
  )


def _size(bench: dict, index: int) -> int:
  return next(n["num_params"] for n in bench["networks"] if n["index"] == index)


if __name__ == "__main__":
  main()
