"""Fig. 3: train/val loss and the LLC over training through grokking.

Trains the Fig. 3 network (p=53, K=1024; vmapped seeds) through the run store
(``runs/``, through ``experiments.fig3.run`` as every study of this network
does) under each protocol (``protocols.fig3_protocol``):

* ``recipe``: the recipe (Adam lr 1e-3, coupled L2 1e-5, batch 128);
* ``authors``: the Fig. 3 caption, the authors' stated setting (lr 1e-4,
  wd 1e-4, batch 128, K=1024, p=53); it memorises by step ~1000 and
  generalises at ~8000, so it trains 16000 steps.

For each it estimates the LLC at every checkpoint with the paper's SGLD window
(eps 5e-4, γ 5, nβ = B / ln B, 3 chains × (100 burn-in + 500 draws)) and with
chains long enough for the stationarity check (the paper's chains
stop while still rising) at every ``settled_every``-th step. At those
checkpoints it also runs chains that ``slt_jax.llc.autotune`` chose (step
size, burn-in, draws; at the paper's nβ, γ and minibatch, 4 chains, tuned
once on the first checkpoint after memorisation and the last; see
``tuned_sweep``), with the gradient evaluations that tuning, the tuned
chains and the settled chains cost. It reports
the peak and final LLC of each, the memorisation and generalisation steps,
and whether the LLC drop coincides with the validation-loss drop. Writes
``DIR/results.json`` and one ``DIR/llc_over_training_PROTOCOL.png`` per
protocol (``--replot`` redraws them from ``results.json``), then prints
``summary(results)``: those paths, and the LLC at memorisation and after
grokking under each chain setting with their stationarity, and what
autotune chose and spent.

    python -m experiments.llc_over_training --quick   # make demo: recipe
    python -m experiments.llc_over_training           # recipe, 3 seeds
    python -m experiments.llc_over_training --paper   # both protocols

``--quick`` (recipe, one seed, 8000 steps, 32 + 8 checkpoints) took 6.3 min
on 2 idle CPU cores (a fresh clone, 2026-12-04), 2.3 min of it autotune's
tuning. ``--paper`` (both protocols, one seed) adds the caption's 16000
steps and 32 + 16 checkpoints, about 3× that
work; its measured runtime is in ``figures/paper/README.md``. Trained runs
resume from the run store and chains from ``DIR/chains/``.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np

from experiments import cli, fig3, protocols, store, sweeps, tuning
from slt_jax import persist
from slt_jax.grokking import grokking_metrics, plotting
from slt_jax.llc import SGLDConfig

NAME = "llc_over_training"
# The LLC drop "coincides" with the val-loss drop when the two midpoint
# crossings (grokking_metrics.llc_curve_summary) are at most this fraction of the
# val-loss drop step apart.
COINCIDENCE = 0.25
PAPER_REFERENCE = {
  "peak_llc": 4900,
  "final_llc": 4300,
  "repro_peak": 4976,
  "repro_final": 4420,
}


def drop_coincides(summary: dict) -> bool:
  """Whether the LLC drop and the val-loss drop are at most ``COINCIDENCE``
  times the val-loss drop step apart (False when either is missing)."""
  return bool(
    summary["lag"] is not None
    and abs(summary["lag"]) <= COINCIDENCE * summary["val_loss_drop_step"]
  )


def summarise(steps, sweep: dict, run, memorisation: np.ndarray) -> dict:
  """``grokking_metrics.llc_curve_summary`` of the seed-mean curve, the coincidence
  verdict, and the summary of every seed (``per_seed``)."""
  per_seed = [
    grokking_metrics.llc_curve_summary(
      steps,
      sweep["mean"][s],
      run.log_steps,
      run.metrics["val_loss"][s],
      int(memorisation[s]),
    )
    for s in range(len(memorisation))
  ]
  mean = grokking_metrics.llc_curve_summary(
    steps,
    sweep["mean"].mean(0),
    run.log_steps,
    run.metrics["val_loss"].mean(0),
    int(np.median(memorisation)),
  )
  return {
    **mean,
    "drop_coincides_with_val_loss_drop": drop_coincides(mean),
    "per_seed": per_seed,
  }


def measure(
  cfg: fig3.Fig3Config, protocol: str, seed: int, out_dir: str, runs_dir
) -> dict:
  """Training outcome and the LLC sweeps of one protocol's run."""
  run, data = fig3.run(cfg, protocol, seed, runs_dir)
  key_llc, key_settled = fig3.keys(seed)[2:]
  proto = cfg.protocol(protocol)
  loss_fn = store.loss_fn(proto.train.loss)
  chains = os.path.join(out_dir, "chains", protocol)
  paper = sweeps.llc_sweep(
    key_llc,
    loss_fn,
    run.checkpoints,
    data.train,
    cfg.sgld,
    os.path.join(chains, "paper"),
  )
  idx = np.flatnonzero(run.ckpt_steps % cfg.settled_every == 0)
  settled = sweeps.llc_sweep(
    key_settled,
    loss_fn,
    jax.tree.map(lambda x: x[:, idx], run.checkpoints),
    data.train,
    cfg.settled,
    os.path.join(chains, "settled"),
  )
  mem = grokking_metrics.memorisation_step(
    run.log_steps, run.metrics["train_acc"]
  )
  settled_summary = summarise(run.ckpt_steps[idx], settled, run, mem)
  tuned = (
    tuned_sweep(
      cfg, (run, data, loss_fn), idx, mem, key_settled, chains, settled
    )
    if cfg.tune_budget_grads
    else {}
  )
  return {
    "source": proto.source,
    "train": dataclasses.asdict(proto.train),
    "log_steps": run.log_steps,
    "metrics": run.metrics,
    "ckpt_steps": run.ckpt_steps,
    "settled_ckpt_steps": run.ckpt_steps[idx],
    "memorisation_step": mem,
    "generalisation_step": grokking_metrics.generalisation_step(
      run.log_steps, run.metrics["val_acc"]
    ),
    "grokking_delay": grokking_metrics.grokking_delay(
      run.log_steps, run.metrics["train_acc"], run.metrics["val_acc"]
    ),
    "train_steps_per_second": run.steps_per_second,
    "llc_paper_settings": paper,
    "llc_settled": settled,
    "paper": summarise(run.ckpt_steps, paper, run, mem),
    "settled": settled_summary,
    "drop_survives_settled": settled_summary["final_over_peak"] < 1.0,
    **tuned,
  }


def tuned_sweep(cfg, problem, idx, mem, key, chains: str, settled) -> dict:
  """The LLC at the checkpoints ``idx`` with ``autotune``'s chains.

  ``autotune`` runs once, at nβ, γ and minibatch of ``cfg.sgld`` (4 chains),
  on seed 0's first checkpoint at or after memorisation and its last
  (``tuning.memorised_and_last``); its config then runs at every checkpoint
  of ``idx``. Where autotune refused (a budget too small for its first
  ladder, a checkpoint that is not a minimum) only ``tune`` is returned,
  with the reason.

  Args:
    cfg: the mode's ``Fig3Config``.
    problem: (the trained run, its data, the loss function).
    idx: the settled sweep's checkpoint indices.
    mem: (seeds,) memorisation steps.
    key: PRNG key.
    chains: folder of the chains and the tuning outcome.
    settled: the settled sweep (``sweeps.llc_sweep``), for its cost.

  Returns:
    dict: ``tune`` (``tuning.cached_tune``'s outcome with ``point_steps``),
    ``llc_tuned`` (the sweep), ``tuned`` (its ``summarise``) and ``cost``:
    the gradient evaluations of tuning, of the tuned sweep and of the
    settled sweep.
  """
  run, data, loss_fn = problem
  points, point_steps = tuning.memorised_and_last(run, idx, int(mem[0]))
  tune = tuning.cached_tune(
    jax.random.fold_in(key, 1),
    loss_fn,
    points,
    data.train,
    dataclasses.replace(cfg.sgld, num_chains=4),
    os.path.join(chains, "tune.json"),
    {"data": [persist.array_digest(x) for x in jax.tree.leaves(data.train)]},
    batch_ndim=1,
    budget_grads=cfg.tune_budget_grads,
    tolerance=cfg.tune_tolerance,
  )
  tune = {**tune, "point_steps": point_steps}
  if tune["estimate"] is None:
    return {"tune": tune}
  tuned_cfg = SGLDConfig(**tune["config"])
  sweep = sweeps.llc_sweep(
    jax.random.fold_in(key, 2),
    loss_fn,
    jax.tree.map(lambda x: x[:, idx], run.checkpoints),
    data.train,
    tuned_cfg,
    os.path.join(chains, "tuned"),
  )
  return {
    "tune": tune,
    "llc_tuned": sweep,
    "tuned": summarise(run.ckpt_steps[idx], sweep, run, mem),
    "cost": {
      "tune_grads": tune["gradient_evaluations"],
      "tuned_sweep_grads": sweep["gradient_evaluations"],
      "settled_sweep_grads": settled["gradient_evaluations"],
    },
  }


def compute(
  cfg: fig3.Fig3Config, names, seed: int, out_dir: str, runs_dir
) -> dict:
  """Every protocol in ``names`` (see the module docstring)."""
  start = time.perf_counter()
  found = {}
  for name in names:
    t0 = time.perf_counter()
    found[name] = {
      **measure(cfg, name, seed, out_dir, runs_dir),
      "seconds": time.perf_counter() - t0,
    }
  return {
    "config": dataclasses.asdict(cfg),
    "seeds": cfg.seeds,
    "protocols": found,
    "coincidence_fraction": COINCIDENCE,
    "paper_reference": PAPER_REFERENCE,
    "wall_seconds": time.perf_counter() - start,
  }


def plot(results: dict, out_dir: str) -> None:
  """``llc_over_training_PROTOCOL.png`` per protocol, from ``results``."""
  cfg = results["config"]
  band = lambda sweep: (
    np.asarray(sweep["mean"], float).mean(0),
    np.asarray(sweep["std"], float).mean(0),
  )
  window = lambda sweep: (
    f"{sweep['config']['num_burnin']}+{sweep['config']['num_draws']} steps"
  )
  for name, r in results["protocols"].items():
    paper, settled = r["llc_paper_settings"], r["llc_settled"]
    curves = {
      f"LLC, paper SGLD ({window(paper)})": (
        np.asarray(r["ckpt_steps"]),
        *band(paper),
      ),
      f"LLC, settled chains ({window(settled)})": (
        np.asarray(r["settled_ckpt_steps"]),
        *band(settled),
      ),
    }
    if "llc_tuned" in r:
      tuned = r["llc_tuned"]
      eps = tuned["config"]["step_size"]
      curves[f"LLC, autotune (eps {eps:.2g}, {window(tuned)})"] = (
        np.asarray(r["settled_ckpt_steps"]),
        *band(tuned),
      )
    fig = plotting.plot_llc_over_training(
      np.asarray(r["log_steps"]),
      np.asarray(r["metrics"]["train_loss"], float).mean(0),
      np.asarray(r["metrics"]["val_loss"], float).mean(0),
      curves,
      {
        "memorisation": float(np.median(r["memorisation_step"])),
        "generalisation": float(np.median(r["generalisation_step"])),
        "LLC peak (paper SGLD)": r["paper"]["peak_step"],
      },
      title=(
        f"{name}: p={cfg['data']['p']}, K={cfg['model']['width']}, "
        f"lr={r['train']['lr']:g}, wd={r['train']['weight_decay']:g}, "
        f"batch {r['train']['batch_size']}, {results['seeds']} "
        "seed(s)"
      ),
    )
    plotting.save_figure(fig, os.path.join(out_dir, f"{NAME}_{name}.png"))


def _llc_at(sweep: dict, steps, step: int) -> str:
  """The seed-mean LLC ± std of ``sweep`` at checkpoint ``step``."""
  c = list(steps).index(step)
  mean = np.asarray(sweep["mean"], float)[:, c].mean()
  std = np.asarray(sweep["std"], float)[:, c].mean()
  return f"{mean:,.0f} ± {std:,.0f} (step {step})"


def summary(
  results: dict, out_dir: str = os.path.join(cli.FIGURES_DIR, NAME)
) -> str:
  """What a person reads at the end of a run (``make demo``), from
  ``results`` alone.

  Where the figures and ``results.json`` are, and per protocol the LLC at
  memorisation and after grokking under each chain setting (the paper
  window, settled chains, autotune's chains where they ran), with how many
  checkpoints passed the stationarity check, and what autotune chose and
  spent. "At memorisation" is the first
  checkpoint at or after the (median) memorisation step, "after grokking"
  the last checkpoint.
  """
  cfg, seeds = results["config"], results["seeds"]
  row = "  {:<24}{:<25}{:<25}{}"
  lines = [
    f"Fig. 3, LLC over training ({results.get('mode', '?')} mode: "
    f"p={cfg['data']['p']}, K={cfg['model']['width']}, "
    f"{seeds} seed{'s' if seeds > 1 else ''})",
    f"results: {os.path.join(out_dir, 'results.json')}",
  ]
  for name, r in results["protocols"].items():
    mem = int(np.median(r["memorisation_step"]))
    gen = int(np.median(r["generalisation_step"]))
    lines += [
      f"[{name}] figure: {os.path.join(out_dir, f'{NAME}_{name}.png')}",
      f"  memorised (train acc >= 0.99) at step {mem}, "
      + (
        f"grokked (val acc >= 0.95) at step {gen}"
        if gen >= 0
        else "never grokked (val acc < 0.95 throughout)"
      ),
      row.format(
        "chains", "LLC at memorisation", "after grokking", "stationary"
      ),
    ]
    drifting = []
    windows = [
      ("paper", "llc_paper_settings", "ckpt_steps"),
      ("settled", "llc_settled", "settled_ckpt_steps"),
    ]
    if "llc_tuned" in r:
      windows.append(("autotune", "llc_tuned", "settled_ckpt_steps"))
    for window, key, steps_key in windows:
      sweep, steps = r[key], r[steps_key]
      first = next((s for s in steps if s >= mem), steps[0])
      ok = np.asarray(sweep["stationary"], bool)
      c = sweep["config"]
      lines.append(
        row.format(
          f"{window} ({c['num_burnin']} + {c['num_draws']})",
          _llc_at(sweep, steps, first),
          _llc_at(sweep, steps, steps[-1]),
          f"{int(ok.sum())} of {ok.size} "
          + ("checkpoints" if seeds == 1 else "(seed, checkpoint)s"),
        )
      )
      if not ok.all():
        drifting.append(window)
    if drifting:
      lines.append(
        f"  not stationary ({', '.join(drifting)}): the chains "
        "stop while the estimate still moves;\n  longer chains "
        "(num_burnin, num_draws) settle it"
      )
    if "tune" in r:
      lines.append(_tune_line(r))
  return "\n".join(lines)


def _tune_line(r: dict) -> str:
  """What autotune chose and spent against the settled sweep's cost, and
  why, unless it settled."""
  tune = r["tune"]
  if "cost" not in r:
    return f"  autotune: no tuned chains; {tune['reason']}"
  c, cost = tune["config"], r["cost"]
  line = (
    f"  autotune ({'settled' if tune['settled'] else 'NOT settled'}): "
    f"eps {c['step_size']:.3g}, {c['num_burnin']} + {c['num_draws']} steps "
    f"x {c['num_chains']} chains; {cost['tune_grads']:,} gradients to tune "
    f"+ {cost['tuned_sweep_grads']:,} to sweep (settled sweep "
    f"{cost['settled_sweep_grads']:,})"
  )
  return line if tune["settled"] else f"{line}\n  why: {tune['reason']}"


def add_flags(parser) -> None:
  """``--protocol`` and ``--runs``."""
  parser.add_argument(
    "--protocol",
    default=None,
    help="recipe, authors (the Fig. 3 caption) or both "
    "(default: both with --paper, else recipe)",
  )
  store.add_runs_flag(parser)


def paper_rows(results: dict) -> list[dict]:
  """Rows of ``figures/paper/README.md``: peak and final LLC per protocol
  (paper window; settled chains beside), and whether the drop coincides with
  the val-loss drop."""
  rows = []
  for name, r in results["protocols"].items():
    paper, settled = r["paper"], r["settled"]
    rows += [
      {
        "protocol": name,
        "quantity": f"peak LLC (step {paper['peak_step']}; "
        f"settled {settled['peak_llc']:.0f})",
        "ours": paper["peak_llc"],
        "paper": PAPER_REFERENCE["peak_llc"],
        "match": abs(paper["peak_llc"] / PAPER_REFERENCE["peak_llc"] - 1)
        <= 0.3,
      },
      {
        "protocol": name,
        "quantity": f"final LLC (settled {settled['final_llc']:.0f})",
        "ours": paper["final_llc"],
        "paper": PAPER_REFERENCE["final_llc"],
        "match": abs(paper["final_llc"] / PAPER_REFERENCE["final_llc"] - 1)
        <= 0.3,
      },
      {
        "protocol": name,
        "quantity": "LLC drop coincides with val-loss drop",
        "ours": paper["drop_coincides_with_val_loss_drop"],
        "paper": True,
        "match": bool(paper["drop_coincides_with_val_loss_drop"]),
      },
    ]
    if "tuned" in r:
      drop = bool(r["tuned"]["final_over_peak"] < 1.0)
      rows.append(
        {
          "protocol": name,
          "quantity": "memorised → grokked LLC drop, autotune's chains "
          f"(final / peak {r['tuned']['final_over_peak']:.3f}; "
          f"{'settled' if r['tune']['settled'] else 'NOT settled'}; "
          "extension)",
          "ours": drop,
          "paper": True,
          "match": drop and r["tune"]["settled"],
        }
      )
  return rows


def main(argv=None) -> dict:
  args, mode = cli.parse_mode(__doc__, add_flags, argv)
  cfg = fig3.CONFIGS[mode]
  names = (
    protocols.parse(args.protocol) if args.protocol else cfg.default_protocols
  )
  results = cli.compute_then_plot(
    NAME,
    args,
    lambda: {
      "mode": mode,
      **compute(
        cfg, names, args.seed, cli.output_dir(NAME, args.out), args.runs
      ),
    },
    plot,
  )
  print(summary(results, cli.output_dir(NAME, args.out)))
  return results


if __name__ == "__main__":
  main()
