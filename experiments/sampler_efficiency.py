"""Sampler study: SGLD vs RMSprop-SGLD vs SGHMC vs SGNHT, against NUTS.

On the Fig. 3 run's grokked checkpoint (p=53, K=1024, 162,816 parameters;
minibatch 128, nβ = B / ln B, γ = 5: the paper's posterior) and on two known
cases (``slt_jax.known_cases``: a normal crossing and a reduced-rank
regression, full batch, their own nβ and γ), every sampler runs at its
largest stable step, by ``slt_jax.llc.calibrate``'s rule on one step grid:
the largest step without divergence whose acceptance proxy (the MALA proxy
for the SGLD family, the leapfrog energy-error proxy of ``slt_jax.samplers.sghmc``
for the momentum samplers) is ≥ ``min_accept``, for calibrate's default 0.5
and a stricter 0.9. At that step a longer run gives the LLC, its Monte Carlo
standard error (from the bulk ESS of the pooled loss trace, numpyro), ESS
per second (wall time of a warm second call of the compiled sweep; the
library's per-chunk ``diagnostics.ess_per_second`` is recorded next to it)
and ESS per gradient evaluation (one gradient per step, burn-in included).
On the known cases NUTS (``slt_jax.llc.nuts.nuts_llc``, exact up to Monte
Carlo error) gives the ground truth, so each sampler's bias at its chosen
step is measured; on the Fig. 3 network NUTS is not feasible on a CPU
(full-batch gradients, up to 2^10 of them per draw) and the samplers are
compared with each other. The verdict per target: the sampler with the
highest ESS/s among those not detectably biased (|bias| ≤ 3 combined
standard errors against NUTS; elsewhere: stationary, no divergence), and
its factor over SGLD. Writes ``DIR/results.json`` and
``DIR/sampler_efficiency.png`` (``--replot`` redraws).

    python -m experiments.sampler_efficiency --quick

``--quick`` took 9.7 minutes on 2 CPU cores shared with other jobs (load
average ~2.7; ``wall_seconds`` in the results), most of it the Fig. 3 runs
and the NUTS reference on the reduced-rank regression (95 s). Under load the
per-second numbers are noisy; ESS per gradient is not.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments import cli, fig3, results, store
from experiments.bench import workload
from slt_jax import known_cases
from slt_jax.grokking import plotting
from slt_jax.llc import calibrate, compile_sweep, nuts
from slt_jax.llc.config import PAPER_SGLD, SGLDConfig

NAME = "sampler_efficiency"
SAMPLERS = ("sgld", "rmsprop_sgld", "sghmc", "sgnht")
BIAS_Z = 3.0  # |bias| / combined standard error above which a sampler is biased


@dataclasses.dataclass(frozen=True)
class EfficiencyConfig:
  """Settings of the sampler study.

  Attributes:
    fig3_mode: the ``fig3.CONFIGS`` mode whose run is studied.
    fig3_step: training step of the studied (grokked) checkpoint.
    fig3_step_sizes: the calibration grid on the Fig. 3 network.
    cases: known cases (names in ``slt_jax.known_cases.CASES``).
    case_step_sizes: the calibration grid on the known cases.
    samplers: the samplers compared.
    min_accepts: acceptance thresholds of the step rule (calibrate's default
      is 0.5); one measured run per distinct chosen step.
    max_step_downs: steps down the grid when a measured run diverges.
    calib_chains, calib_burnin, calib_draws: calibration budget.
    fig3_chains, fig3_burnin, fig3_draws: budget of the measured Fig. 3 runs.
    case_chains, case_burnin, case_draws: budget of the measured case runs.
    nuts_warmup, nuts_samples, nuts_chains: the NUTS reference's budget.
    nuts_target_accept: its dual-averaging target (high: the singular
      posteriors have cross- and ridge-shaped level sets).
  """

  fig3_mode: str
  fig3_step: int
  fig3_step_sizes: tuple[float, ...] = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)
  cases: tuple[str, ...] = ("normal_crossing_23", "rrr_5_3_5")
  case_step_sizes: tuple[float, ...] = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3)
  samplers: tuple[str, ...] = SAMPLERS
  min_accepts: tuple[float, ...] = (0.5, 0.9)
  max_step_downs: int = 2
  calib_chains: int = 2
  calib_burnin: int = 100
  calib_draws: int = 200
  fig3_chains: int = 4
  fig3_burnin: int = 500
  fig3_draws: int = 1000
  case_chains: int = 8
  case_burnin: int = 1000
  case_draws: int = 4000
  nuts_warmup: int = 500
  nuts_samples: int = 1000
  nuts_chains: int = 4
  nuts_target_accept: float = 0.95


CONFIGS = {
  "smoke": EfficiencyConfig(
    fig3_mode="smoke",
    fig3_step=200,
    fig3_step_sizes=(1e-4, 1e-3),
    cases=("normal_crossing_12",),
    case_step_sizes=(1e-4, 1e-3),
    samplers=("sgld", "sghmc"),
    min_accepts=(0.5,),
    calib_chains=1,
    calib_burnin=5,
    calib_draws=10,
    fig3_chains=2,
    fig3_burnin=10,
    fig3_draws=30,
    case_chains=2,
    case_burnin=10,
    case_draws=40,
    nuts_warmup=20,
    nuts_samples=20,
    nuts_chains=2,
  ),
  "quick": EfficiencyConfig(
    fig3_mode="quick", fig3_step=8000, fig3_burnin=2000, fig3_draws=1000
  ),
  "default": EfficiencyConfig(
    fig3_mode="quick",
    fig3_step=8000,
    fig3_chains=8,
    fig3_burnin=1000,
    fig3_draws=3000,
    case_draws=10000,
    nuts_samples=2000,
  ),
  "paper": EfficiencyConfig(
    fig3_mode="quick",
    fig3_step=8000,
    fig3_chains=8,
    fig3_burnin=1000,
    fig3_draws=3000,
    case_draws=10000,
    nuts_samples=2000,
  ),
}


def _ess_mcse(res) -> tuple[float, float]:
  """Bulk ESS of the pooled loss trace (non-diverged chains, as
  ``diagnostics.ess``) and the MCSE of the mean it gives (nan if all
  diverged)."""
  ess = float(res.diagnostics.ess)
  good = res.loss_trace[~np.asarray(res.diagnostics.diverged)]
  if good.size < 2 or not np.isfinite(ess):
    return ess, float("nan")
  sd = float(res.nbeta) * float(np.std(good, ddof=1))
  return ess, sd / math.sqrt(max(ess, 1.0))


def passing_steps(table: list[dict], min_accept: float) -> list[float]:
  """``calibrate``'s rule on its table, largest first: the steps with no
  diverged chain, a finite estimate and acceptance >= ``min_accept``."""
  ok = [
    r["step_size"]
    for r in table
    if r["diverged_chains"] == 0
    and np.isfinite(r["llc_mean"])
    and np.isfinite(r["mala_accept"])
    and r["mala_accept"] >= min_accept
  ]
  return sorted(ok, reverse=True)


def measure_sampler(
  key,
  loss_fn,
  point,
  data,
  base: SGLDConfig,
  sampler: str,
  steps_all,
  chains: int,
  burnin: int,
  draws: int,
  cfg: EfficiencyConfig,
  mask=None,
) -> list[dict]:
  """Calibrates ``sampler`` at ``point`` (one ``calibrate`` grid) and measures
  a run at the step each threshold of ``cfg.min_accepts`` picks (one step
  down the grid at a time, at most ``cfg.max_step_downs``, while the
  measured run has a diverged chain).

  Returns:
    One dict per threshold: the chosen step, LLC mean/std/MCSE, ESS, wall
    seconds of the warm call, ESS/s, ESS/gradient, diagnostics (or ``error``
    when no step of the grid passed); the calibration table goes with the
    first.
  """
  key_cal, key_run = jax.random.split(key)
  probe = dataclasses.replace(
    base,
    sampler=sampler,
    num_chains=cfg.calib_chains,
    num_burnin=cfg.calib_burnin,
    num_draws=cfg.calib_draws,
  )
  _, table = calibrate(
    key_cal,
    loss_fn,
    point,
    data,
    probe,
    step_sizes=tuple(steps_all),
    min_accept=0.0,
    mask=mask,
  )
  measured, rows = {}, []
  for min_accept in cfg.min_accepts:
    steps = passing_steps(table, min_accept)
    row = {"sampler": sampler, "min_accept": min_accept}
    if not steps:
      rows.append(
        {
          **row,
          "error": f"no step of {tuple(steps_all)} had "
          f"acceptance >= {min_accept} without divergence",
        }
      )
      continue
    # The short calibration runs can miss rare divergences: a measured run
    # with a diverged chain steps down to the next passing step.
    for step in steps[: cfg.max_step_downs + 1]:
      if step not in measured:
        measured[step] = run_at(
          key_run,
          loss_fn,
          point,
          data,
          base,
          sampler,
          step,
          chains,
          burnin,
          draws,
          mask,
        )
      if measured[step]["diverged_chains"] == 0:
        break
    rows.append({**row, **measured[step], "step_downs": steps.index(step)})
  rows[0]["calibration"] = table
  return rows


def run_at(
  key, loss_fn, point, data, base, sampler, step, chains, burnin, draws, mask
) -> dict:
  """One measured run: compiled, run once, then timed on a second call."""
  run_cfg = dataclasses.replace(
    base,
    sampler=sampler,
    step_size=step,
    num_chains=chains,
    num_burnin=burnin,
    num_draws=draws,
  )
  sweep = compile_sweep(loss_fn, run_cfg, data, point, mask=mask)
  start = time.perf_counter()
  sweep.run(key, point, progress=False, warn=False)
  first_seconds = time.perf_counter() - start
  start = time.perf_counter()
  res = sweep.run(key, point, progress=False, warn=False)
  seconds = time.perf_counter() - start
  ess, mcse = _ess_mcse(res)
  gradients = chains * (burnin + draws)
  d = res.diagnostics
  library = {
    name: float(getattr(d, name))
    for name in ("ess_per_second", "ess_per_gradient")
    if hasattr(d, name)
  }
  return {
    "step_size": step,
    "llc_mean": float(res.mean),
    "llc_std": float(res.std),
    "mcse": mcse,
    "ess": ess,
    "seconds": seconds,
    "first_call_seconds": first_seconds,
    "gradient_evals": gradients,
    "ess_per_second": ess / seconds,
    "ess_per_gradient": ess / gradients,
    "library": library,
    "stationary": bool(d.stationary),
    "diverged_chains": int(np.sum(d.diverged)),
    "mala_accept": float(np.nanmean(d.mala_accept)),
    "rhat": float(d.rhat),
  }


def nuts_reference(key, case, cfg: EfficiencyConfig) -> dict:
  """The NUTS estimate at a known case, timed (backend compile excluded)."""
  with workload.CompileClock() as clock:
    start = time.perf_counter()
    res = nuts.nuts_llc(
      key,
      case.loss_fn,
      case.params,
      case.data,
      case.cfg.nbeta,
      case.cfg.localization,
      num_warmup=cfg.nuts_warmup,
      num_samples=cfg.nuts_samples,
      num_chains=cfg.nuts_chains,
      mask=case.mask,
      target_accept_prob=cfg.nuts_target_accept,
    )
    wall = time.perf_counter() - start
  seconds = max(wall - clock.seconds, 1e-9)
  gradients = float(np.sum(res.gradient_evals))
  return {
    "llc_mean": float(res.mean),
    "mcse": float(res.mcse),
    "ess": float(res.ess),
    "rhat": float(res.rhat),
    "divergent": int(np.sum(res.num_divergent)),
    "draws": int(res.loss_trace.size),
    "gradient_evals": gradients,
    "seconds": seconds,
    "wall_seconds_with_compile": wall,
    "ess_per_second": float(res.ess) / seconds,
    "ess_per_gradient": float(res.ess) / gradients,
    "step_size": np.asarray(res.step_size).tolist(),
  }


def verdict(rows: list[dict], nuts) -> dict:
  """Bias against NUTS (where given) and the pick: highest ESS/s among the
  samplers not detectably biased (else: stationary, not diverged)."""
  ok = []
  for row in rows:
    if "error" in row:
      continue
    if nuts is not None:
      se = math.hypot(row["mcse"], nuts["mcse"])
      row["bias"] = row["llc_mean"] - nuts["llc_mean"]
      row["bias_se"] = se
      row["bias_z"] = row["bias"] / se if se > 0 else float("nan")
      row["unbiased"] = bool(abs(row["bias_z"]) <= BIAS_Z)  # nan: False
    good = (
      row.get("unbiased", True)
      and row["diverged_chains"] == 0
      and (nuts is not None or row["stationary"])
    )
    row["acceptable"] = bool(good)
    if good:
      ok.append(row)
  sgld = [r for r in rows if r["sampler"] == "sgld" and "error" not in r]
  good_sgld = [r for r in sgld if r["acceptable"]]
  base = (
    max(good_sgld, key=lambda r: r["ess_per_second"])
    if good_sgld
    else (sgld[0] if sgld else None)
  )
  if not ok:
    return {"pick": None, "reason": "no sampler was unbiased and settled"}
  best = max(ok, key=lambda r: r["ess_per_second"])
  out = {
    "pick": best["sampler"],
    "min_accept": best["min_accept"],
    "step_size": best["step_size"],
    "ess_per_second": best["ess_per_second"],
  }
  if base is not None:
    out["ess_per_second_over_sgld"] = (
      best["ess_per_second"] / base["ess_per_second"]
    )
    out["ess_per_gradient_over_sgld"] = (
      best["ess_per_gradient"] / base["ess_per_gradient"]
    )
    out["sgld_step_size"] = base["step_size"]
    out["sgld_acceptable"] = base["acceptable"]
  return out


def compute(cfg: EfficiencyConfig, seed: int, out_dir: str, runs_dir) -> dict:
  """The study (see the module docstring)."""
  del out_dir
  start = time.perf_counter()
  key = jax.random.fold_in(jax.random.key(seed), 16)
  targets = {}
  fig3_cfg = fig3.CONFIGS[cfg.fig3_mode]
  run, data = fig3.run(fig3_cfg, "recipe", seed, runs_dir)
  idx = int(np.flatnonzero(run.ckpt_steps == cfg.fig3_step)[0])
  point = jax.tree.map(lambda x: np.asarray(x[0, idx]), run.checkpoints)
  loss_fn = store.loss_fn(fig3_cfg.recipe.loss)
  base = dataclasses.replace(PAPER_SGLD, batch_size=fig3_cfg.sgld.batch_size)
  rows = [
    row
    for s in cfg.samplers
    for row in measure_sampler(
      jax.random.fold_in(key, 0),
      loss_fn,
      point,
      data.train,
      base,
      s,
      cfg.fig3_step_sizes,
      cfg.fig3_chains,
      cfg.fig3_burnin,
      cfg.fig3_draws,
      cfg,
    )
  ]
  targets[f"fig3_step{cfg.fig3_step}"] = {
    "description": (
      f"Fig. 3 recipe run ({cfg.fig3_mode}), checkpoint at "
      f"step {cfg.fig3_step}, minibatch {base.batch_size}"
    ),
    "num_params": int(sum(np.size(x) for x in jax.tree.leaves(point))),
    "nbeta": base.resolve_nbeta(data.train.labels.shape[0]),
    "localization": base.localization,
    "samplers": rows,
    "nuts": None,
    "nuts_note": "not run: full-batch NUTS on this network is not "
    "feasible on a CPU",
    "true_llc": None,
    "verdict": verdict(rows, None),
  }
  for i, name in enumerate(cfg.cases):
    case = known_cases.make_case(name, jax.random.fold_in(key, 100 + i))
    nuts = nuts_reference(jax.random.fold_in(key, 200 + i), case, cfg)
    rows = [
      row
      for s in cfg.samplers
      for row in measure_sampler(
        jax.random.fold_in(key, 300 + i),
        case.loss_fn,
        case.params,
        case.data,
        case.cfg,
        s,
        cfg.case_step_sizes,
        cfg.case_chains,
        cfg.case_burnin,
        cfg.case_draws,
        cfg,
        mask=case.mask,
      )
    ]
    targets[name] = {
      "description": f"known case {name} (full batch)",
      "num_params": int(sum(np.size(x) for x in jax.tree.leaves(case.params))),
      "nbeta": case.cfg.nbeta,
      "localization": case.cfg.localization,
      "samplers": rows,
      "nuts": nuts,
      "true_llc": case.true_llc,
      "finite_temp": case.finite_temp,
      "verdict": verdict(rows, nuts),
    }
  return {
    "mode_config": dataclasses.asdict(cfg),
    "fig3_config": dataclasses.asdict(fig3_cfg),
    "targets": targets,
    "cpu": results.cpu_info(),
    "load_average": workload.load(),
    "wall_seconds": time.perf_counter() - start,
  }


def _num(x) -> float:
  """A number read back from JSON (NaN was written as null)."""
  return float("nan") if x is None else float(x)


def plot(results: dict, out_dir: str) -> None:
  """Per target: LLC ± MCSE (NUTS band), ESS/s and ESS/gradient."""
  targets = results["targets"]
  fig, axes = plt.subplots(
    len(targets), 3, figsize=(14, 3.6 * len(targets)), squeeze=False
  )
  for row_axes, (name, target) in zip(axes, targets.items()):
    rows = [r for r in target["samplers"] if "error" not in r]
    labels = [
      f"{r['sampler']} eps {r['step_size']:g} (≥{r['min_accept']:g})"
      for r in rows
    ]
    xs = np.arange(len(rows))
    ax = row_axes[0]
    ax.errorbar(
      xs,
      [_num(r["llc_mean"]) for r in rows],
      [2 * _num(r["mcse"]) for r in rows],
      fmt="o",
      capsize=3,
    )
    nuts = target.get("nuts")
    if nuts:
      ax.axhspan(
        nuts["llc_mean"] - 2 * nuts["mcse"],
        nuts["llc_mean"] + 2 * nuts["mcse"],
        color="C2",
        alpha=0.3,
        label="NUTS ± 2 MCSE",
      )
    if target.get("finite_temp") is not None:
      ax.axhline(
        target["finite_temp"], color="k", ls="--", label="exact finite-nβ"
      )
    ax.set_xticks(xs, labels, fontsize=6, rotation=40, ha="right")
    ax.set_ylabel("LLC ± 2 MCSE")
    ax.set_title(name, fontsize=9)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
    for ax, key, label in (
      (row_axes[1], "ess_per_second", "ESS / s"),
      (row_axes[2], "ess_per_gradient", "ESS / gradient"),
    ):
      vals = [_num(r[key]) for r in rows]
      colors = ["C0" if r.get("acceptable", True) else "C3" for r in rows]
      ax.bar(xs, vals, color=colors)
      if nuts:
        ax.axhline(nuts[key], color="C2", label="NUTS")
        ax.legend(fontsize=7)
      ax.set_yscale("log")
      ax.set_xticks(xs, labels, fontsize=6, rotation=40, ha="right")
      ax.set_ylabel(label + " (red: biased or unsettled)")
  fig.suptitle("Samplers at their largest stable step (calibrate)")
  fig.tight_layout()
  plotting.save_figure(fig, f"{out_dir}/{NAME}.png", dpi=100)


def main(argv=None) -> dict:
  results = cli.run_stored_experiment(
    NAME, __doc__, CONFIGS, compute, plot, argv
  )
  for name, target in results["targets"].items():
    print(f"{name}:")
    for r in target["samplers"]:
      if "error" in r:
        print(f"  {r['sampler']:13s} >={r['min_accept']:g} {r['error']}")
        continue
      bias = (
        f" bias {_num(r['bias']):+.3f} ({_num(r['bias_z']):+.1f} se)"
        if "bias" in r
        else ""
      )
      print(
        f"  {r['sampler']:13s} >={r['min_accept']:g} eps "
        f"{r['step_size']:<7g} LLC {_num(r['llc_mean']):.3f} ± "
        f"{_num(r['mcse']):.3f}{bias}  ESS/s {_num(r['ess_per_second']):.1f}"
        f"  ESS/grad {_num(r['ess_per_gradient']):.4f}"
        f"  div {r['diverged_chains']}"
      )
    if target.get("nuts"):
      n = target["nuts"]
      print(
        f"  {'nuts':13s} LLC {n['llc_mean']:.3f} ± {n['mcse']:.3f}  ESS/s "
        f"{n['ess_per_second']:.1f}  ESS/grad {n['ess_per_gradient']:.4f}"
      )
    print(f"  pick: {target['verdict']}")
  return results


if __name__ == "__main__":
  main()
