"""Which data does the grokking transition move? BIFs and susceptibilities.

Loads the Fig. 3 run from the run store (``experiments.fig3.run``) and,
at three checkpoints of its first seed (``memorised``: a quarter of the way
from the memorisation to the generalisation step; ``mid-transition``: where
the validation accuracy crosses 1/2; ``grokked``: the last checkpoint),
runs localized SGLD three times (W and V moving, W only, V only), recording
the per-example centred-MSE losses of every training and validation pair
inside the chains (``estimate_llc(..., observables=...)``), then:

(a) the Bayesian influence function between training and validation pairs
    (``influence.bif``, Pearson correlation over chains × draws): its
    distribution and mean |correlation| per checkpoint, beside a null made
    by correlating the training losses of chain c with the validation losses
    of chain c + 1 (independent chains: same marginals and autocorrelation,
    no influence), so the noise floor of a finite chain is visible;
(b) whether validation pairs sharing a residue with a training pair (same a,
    same b, or same a + b mod p: the same output class) are more influenced
    by it than pairs sharing none: mean BIF per relation;
(c) susceptibilities (``influence.susceptibility``, devinterp 2.0.1's
    definition) of the W-only and V-only restrictions to probes made
    of the validation pairs, and of the validation pairs of each output class.

Trustworthiness is reported beside every number: the LLC trace's
stationarity check (``res.diagnostics.stationary``) and the split R-hat and
ESS of the recorded validation losses. The cost of recording is measured on
the joint run (the same sweep timed without observables). Writes
``DIR/results.json`` and ``DIR/bif_distribution.png``,
``DIR/bif_by_residue.png``, ``DIR/susceptibility.png`` (``--replot`` redraws
them from ``results.json``).

    python -m experiments.influence_through_grokking --quick   # recipe run
    python -m experiments.influence_through_grokking           # 2x longer chains
    python -m experiments.influence_through_grokking --paper   # caption's run

``--quick`` (the stored recipe run, 3 checkpoints × 3 restrictions × 4 chains
× (1000 + 2000) steps, observed every 10th draw, plus the timing run: ~140k
SGLD chain-steps) took 10.2 min on the 2-core CPU shared with other jobs
(load 1-5; figures/README.md); the default and ``--paper`` (8 chains × (2000
+ 4000), every 20th draw, ~580k chain-steps) about 4× that. Chains are not resumed
(the observables of one point are 9 MB at ``--quick``).
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np

from experiments import cli, fig3, store
from slt_jax.grokking import grokking_metrics, losses, plotting
from slt_jax.llc import compile_sweep, influence
from slt_jax.llc.config import PAPER_SGLD, SGLDConfig

NAME = "influence_through_grokking"
STAGES = ("memorised", "mid-transition", "grokked")
# name -> mask (None: W and V move).
RESTRICTIONS = {
  "W and V": None,
  "W only": lambda path, _: "W" in path,
  "V only": lambda path, _: "V" in path,
}
RELATIONS = ("same a", "same b", "same a+b", "none")
HIST_BINS = np.linspace(-1.0, 1.0, 81)


@dataclasses.dataclass(frozen=True)
class InfluenceConfig:
  """The run studied and how its posterior is sampled.

  Attributes:
    fig3: the Fig. 3 run (``fig3.CONFIGS``); its SGLD settings
      are not used.
    protocol: the run's protocol, ``recipe`` or ``authors``.
    sgld: the chains (eps, γ, nβ of the paper; longer, more chains).
    observe_every: record the per-example losses every k-th draw.
    memorised_frac: the ``memorised`` checkpoint sits this fraction of the
      way from the memorisation step to the generalisation step.
    timing: time the joint sweep again without observables (the cost).
  """

  fig3: fig3.Fig3Config
  protocol: str
  sgld: SGLDConfig
  observe_every: int
  memorised_frac: float = 0.25
  timing: bool = True


# The paper's eps, γ, nβ and minibatch; chains past the relaxation time
# 2 / (eps γ) = 800 steps. Observed every 10th draw: the recorded losses'
# autocorrelation time is longer than that (their ESS is reported).
_QUICK = dataclasses.replace(
  PAPER_SGLD, num_chains=4, num_burnin=1000, num_draws=2000
)
_SMOKE_FIG3 = fig3.CONFIGS["smoke"]
# Five checkpoints (the shared smoke run has two).
_SMOKE_FIG3 = dataclasses.replace(
  _SMOKE_FIG3, recipe=dataclasses.replace(_SMOKE_FIG3.recipe, ckpt_every=40)
)
CONFIGS = {
  "smoke": InfluenceConfig(
    _SMOKE_FIG3,
    "recipe",
    dataclasses.replace(
      PAPER_SGLD, num_chains=2, num_burnin=10, num_draws=20, batch_size=16
    ),
    5,
    timing=False,
  ),
  "quick": InfluenceConfig(fig3.CONFIGS["quick"], "recipe", _QUICK, 10),
  "default": InfluenceConfig(
    fig3.CONFIGS["quick"],
    "recipe",
    dataclasses.replace(_QUICK, num_chains=8, num_burnin=2000, num_draws=4000),
    20,
  ),
  "paper": InfluenceConfig(
    fig3.CONFIGS["paper"],
    "authors",
    dataclasses.replace(_QUICK, num_chains=8, num_burnin=2000, num_draws=4000),
    20,
  ),
}


def stage_checkpoints(
  ckpt_steps, log_steps, train_acc, val_acc, memorised_frac: float
) -> dict:
  """``{stage: checkpoint index}`` of one seed (see the module docstring).

  Without memorisation or generalisation (a run that did not grok) the
  stages fall back to the checkpoints at a quarter, half and all of training.
  """
  ckpt_steps = np.asarray(ckpt_steps)
  if len(ckpt_steps) < 3:
    raise ValueError(
      f"the run has {len(ckpt_steps)} checkpoints: three stages need at least 3"
    )
  mem = int(grokking_metrics.memorisation_step(log_steps, train_acc))
  gen = int(grokking_metrics.generalisation_step(log_steps, val_acc))
  nearest = lambda step: int(np.argmin(np.abs(ckpt_steps - step)))
  last = len(ckpt_steps) - 1
  if mem < 0 or gen < 0:
    first, mid = nearest(ckpt_steps[-1] / 4), nearest(ckpt_steps[-1] / 2)
  else:
    first = nearest(mem + memorised_frac * (gen - mem))
    mid = nearest(
      int(grokking_metrics.first_step_at_least(log_steps, val_acc, 0.5))
    )
  first = min(first, last - 2)  # three distinct checkpoints, in order.
  mid = min(max(mid, first + 1), last - 1)
  return {STAGES[0]: first, STAGES[1]: mid, STAGES[2]: last}


def residue_relations(
  train_pairs: np.ndarray, val_pairs: np.ndarray, p: int
) -> dict:
  """``{relation: (n_train, n_val) bool}``: same a, same b, same (a+b) mod p,
  and none of the three."""
  a_t, b_t = train_pairs[:, 0, None], train_pairs[:, 1, None]
  a_v, b_v = val_pairs[None, :, 0], val_pairs[None, :, 1]
  rel = {
    "same a": a_t == a_v,
    "same b": b_t == b_v,
    "same a+b": (a_t + b_t) % p == (a_v + b_v) % p,
  }
  rel["none"] = ~(rel["same a"] | rel["same b"] | rel["same a+b"])
  return rel


def _null_correlation(res) -> np.ndarray:
  """Train × val correlations with the val losses of the next chain:
  (points, n_train, n_val)."""
  val = res.observables["val"]
  shifted = res._replace(
    observables={
      "train": res.observables["train"],
      "val": np.roll(val, 1, axis=-3),
    }
  )
  return influence.bif(shifted, "train", "val", kind="correlation")


def _bytes(stats) -> dict:
  return {
    "argument": int(stats.argument_size_in_bytes),
    "output": int(stats.output_size_in_bytes),
    "temp": int(stats.temp_size_in_bytes),
  }


def _histogram(x: np.ndarray) -> list:
  return np.histogram(np.clip(x[np.isfinite(x)], -1, 1), HIST_BINS)[0]


def measure(cfg: InfluenceConfig, seed: int, runs_dir) -> dict:
  """Every sweep and estimate (see the module docstring)."""
  run, data = fig3.run(cfg.fig3, cfg.protocol, seed, runs_dir)
  key_llc = fig3.keys(seed)[2]
  p = data.p
  metric = lambda name: np.asarray(run.metrics[name][0])
  stages = stage_checkpoints(
    run.ckpt_steps,
    run.log_steps,
    metric("train_acc"),
    metric("val_acc"),
    cfg.memorised_frac,
  )
  idx = np.array([stages[s] for s in STAGES])
  ckpts = jax.tree.map(lambda x: np.asarray(x[0, idx]), run.checkpoints)
  name = cfg.fig3.protocol(cfg.protocol).train.loss
  loss_fn = store.loss_fn(name)
  observed = dict(
    observables={"train": data.train, "val": data.val},
    observe_every=cfg.observe_every,
    per_example_loss_fn=losses.make_per_example_loss(name),
  )
  results, timing = {}, {}
  for i, (restriction, mask) in enumerate(RESTRICTIONS.items()):
    key = jax.random.fold_in(key_llc, i)
    sweep = compile_sweep(
      loss_fn, cfg.sgld, data.train, ckpts, 1, mask=mask, **observed
    )
    stats = sweep.memory_analysis()  # compiles the chunk program.
    start = time.perf_counter()
    results[restriction] = sweep.run(key, ckpts, 1, warn=False)
    seconds = time.perf_counter() - start
    print(
      f"{restriction}: LLC {np.round(results[restriction].mean)} in "
      f"{seconds:.0f} s",
      flush=True,
    )
    if i == 0 and cfg.timing:  # the cost: the same sweep without observables.
      plain = compile_sweep(loss_fn, cfg.sgld, data.train, ckpts, 1, mask=mask)
      plain_stats = plain.memory_analysis()
      start = time.perf_counter()
      again = plain.run(key, ckpts, 1, progress=False, warn=False)
      plain_seconds = time.perf_counter() - start
      num_steps = (
        len(idx)
        * cfg.sgld.num_chains
        * (cfg.sgld.num_burnin + cfg.sgld.num_draws)
      )
      timing = {
        "with_observables_s": seconds,
        "without_observables_s": plain_seconds,
        "sgld_steps_per_second_with": num_steps / seconds,
        "sgld_steps_per_second_without": num_steps / plain_seconds,
        "same_chains": bool(
          np.array_equal(again.loss_trace, results[restriction].loss_trace)
        ),
        "chunk_points": sweep.chunk_size,
        "xla_chunk_bytes_with": _bytes(stats),
        "xla_chunk_bytes_without": _bytes(plain_stats),
        "load_average": os.getloadavg()[0],
      }
  return {
    "stages": stages,
    "idx": idx,
    "data": data,
    "run": run,
    "results": results,
    "timing": timing,
    "p": p,
  }


def analyse(m: dict, cfg: InfluenceConfig) -> dict:
  """(a), (b), (c) and the diagnostics, as JSON-able numbers."""
  data, run, results = m["data"], m["run"], m["results"]
  joint = results["W and V"]
  corr = influence.bif(joint, "train", "val", kind="correlation")
  cov = influence.bif(joint, "train", "val")
  null = _null_correlation(joint)
  rel = residue_relations(
    np.asarray(data.train.pairs), np.asarray(data.val.pairs), m["p"]
  )
  val_labels = np.asarray(data.val.labels)
  obs = joint.observables["val"]
  per_stage = {}
  for s, stage in enumerate(STAGES):
    step = int(run.ckpt_steps[m["idx"][s]])
    log = int(np.argmin(np.abs(np.asarray(run.log_steps) - step)))
    rhat = influence.split_rhat(joint, "val")[s]
    ess = influence.effective_sample_size(joint, "val")[s]
    chi = {}
    for restriction in ("W only", "V only", "W and V"):
      res = results[restriction]
      per_example = influence.susceptibility(res, joint, "val")[s]
      response = influence.susceptibility(
        res, joint, "val", center="restricted"
      )[s]
      chi[restriction] = {
        "val_pairs": float(per_example.mean()),
        "per_class": [
          float(per_example[val_labels == c].mean()) for c in range(m["p"])
        ],
        "per_example_std": float(per_example.std()),
        "val_pairs_restricted_center": float(response.mean()),
        "per_class_restricted_center": [
          float(response[val_labels == c].mean()) for c in range(m["p"])
        ],
        "mean_val_loss": float(res.observables["val"][s].mean()),
        "mean_train_loss": float(res.observables["train"][s].mean()),
        "stationary": bool(res.diagnostics.stationary[s]),
        "val_loss_frac_rhat_above_1.1": float(
          np.mean(influence.split_rhat(res, "val")[s] > 1.1)
        ),
        "llc": float(res.mean[s]),
      }
    per_stage[stage] = {
      "step": step,
      "train_acc": float(run.metrics["train_acc"][0][log]),
      "val_acc": float(run.metrics["val_acc"][0][log]),
      "llc": float(joint.mean[s]),
      "llc_std": float(joint.std[s]),
      "stationary": bool(joint.diagnostics.stationary[s]),
      "llc_drift_z": float(joint.diagnostics.drift_z[s]),
      "val_loss_rhat_median": float(np.nanmedian(rhat)),
      "val_loss_frac_rhat_above_1.1": float(np.mean(rhat > 1.1)),
      "val_loss_ess_median": float(np.nanmedian(ess)),
      "mean_abs_corr": float(np.nanmean(np.abs(corr[s]))),
      "null_mean_abs_corr": float(np.nanmean(np.abs(null[s]))),
      "mean_corr": float(np.nanmean(corr[s])),
      "corr_quantiles": np.nanquantile(corr[s], [0.01, 0.1, 0.5, 0.9, 0.99]),
      "corr_hist": _histogram(corr[s]),
      "null_hist": _histogram(null[s]),
      "mean_val_loss": float(obs[s].mean()),
      "by_relation": {
        r: {
          "mean_corr": float(np.nanmean(corr[s][mask])),
          "null_mean_corr": float(np.nanmean(null[s][mask])),
          "mean_cov": float(np.mean(cov[s][mask])),
          "mean_abs_corr": float(np.nanmean(np.abs(corr[s][mask]))),
          "pairs": int(mask.sum()),
        }
        for r, mask in rel.items()
      },
      "susceptibility": chi,
    }
  num_obs = cfg.sgld.num_draws // cfg.observe_every
  n_total = int(data.train.labels.shape[0] + data.val.labels.shape[0])
  return {
    "stages": per_stage,
    "observables_bytes_per_point": 4 * cfg.sgld.num_chains * num_obs * n_total,
    "samples_per_estimate": cfg.sgld.num_chains * num_obs,
    "timing": m["timing"],
  }


def compute(cfg: InfluenceConfig, seed: int, out_dir: str, runs_dir) -> dict:
  """Sweeps, then the analysis (``out_dir`` unused: nothing resumes)."""
  del out_dir
  start = time.perf_counter()
  m = measure(cfg, seed, runs_dir)
  run = m["run"]
  mem = grokking_metrics.memorisation_step(
    run.log_steps, run.metrics["train_acc"]
  )
  gen = grokking_metrics.generalisation_step(
    run.log_steps, run.metrics["val_acc"]
  )
  out = analyse(m, cfg)
  out.update(
    config=dataclasses.asdict(cfg),
    protocol=cfg.protocol,
    source=cfg.fig3.protocol(cfg.protocol).source,
    memorisation_step=int(mem[0]),
    generalisation_step=int(gen[0]),
    log_steps=run.log_steps,
    val_acc=run.metrics["val_acc"][0],
    train_acc=run.metrics["train_acc"][0],
    hist_bins=HIST_BINS,
    num_train=m["data"].num_train,
    num_val=int(m["data"].val.labels.shape[0]),
    headline=headline(out),
    wall_seconds=time.perf_counter() - start,
  )
  return out


def headline(out: dict) -> str:
  """One line per stage: what changes between them."""
  lines = []
  for stage, r in out["stages"].items():
    rel = r["by_relation"]
    chi = r["susceptibility"]
    lines.append(
      f"{stage} (step {r['step']}, val acc {r['val_acc']:.2f}): mean |r| "
      f"{r['mean_abs_corr']:.3f} (null {r['null_mean_abs_corr']:.3f}); "
      "mean r same a / same b / same a+b / none "
      + " / ".join(f"{rel[k]['mean_corr']:+.3f}" for k in RELATIONS)
      + f"; chi_W {chi['W only']['val_pairs']:.3g} (restricted centre "
      f"{chi['W only']['val_pairs_restricted_center']:.3g}), chi_V "
      f"{chi['V only']['val_pairs']:.3g} "
      f"({chi['V only']['val_pairs_restricted_center']:.3g}); "
      f"R-hat > 1.1 for {100 * r['val_loss_frac_rhat_above_1.1']:.0f}% of "
      "val losses"
    )
  return "\n".join(lines)


def findings(results: dict) -> dict:
  """The study's two findings, read from ``results``: whether both
  restricted susceptibilities to the validation pairs drop from the
  memorised to the grokked checkpoint, and whether at every stage a
  validation pair sharing an operand with a training pair (same a or same
  b) is more influenced by it than one sharing no residue.

  >>> stage = lambda w, v, same: {
  ...   "susceptibility": {"W only": {"val_pairs": w}, "V only": {"val_pairs": v}},
  ...   "by_relation": {"same a": {"mean_corr": same},
  ...                   "same b": {"mean_corr": same}, "none": {"mean_corr": 0.0}}}
  >>> findings({"stages": {"memorised": stage(9.0, 3.0, 0.03),
  ...                      "grokked": stage(4.0, 1.0, 0.03)}})
  {'susceptibility_drops': True, 'shared_operand_stronger': True}
  """
  stages = list(results["stages"].values())
  first, last = stages[0]["susceptibility"], stages[-1]["susceptibility"]
  drops = all(
    last[r]["val_pairs"] < first[r]["val_pairs"] for r in ("W only", "V only")
  )
  shared = all(
    min(s["by_relation"][r]["mean_corr"] for r in ("same a", "same b"))
    > s["by_relation"]["none"]["mean_corr"]
    for s in stages
  )
  return {"susceptibility_drops": drops, "shared_operand_stronger": shared}


def paper_rows(results: dict) -> list[dict]:
  """Rows of ``figures/paper/README.md`` (an extension: no paper values)."""
  protocol = f"{results['protocol']} (extension)"
  rows = []
  for stage, r in results["stages"].items():
    chi = r["susceptibility"]
    rel = r["by_relation"]
    rows.append(
      {
        "protocol": protocol,
        "quantity": f"{stage} (step {r['step']}): χ_W, χ_V to the val "
        f"pairs {chi['W only']['val_pairs']:.3g}, "
        f"{chi['V only']['val_pairs']:.3g}; mean BIF r same a / same b / "
        f"none {rel['same a']['mean_corr']:+.3f} / "
        f"{rel['same b']['mean_corr']:+.3f} / {rel['none']['mean_corr']:+.3f};"
        " share of val losses with split R-hat > 1.1",
        "ours": r["val_loss_frac_rhat_above_1.1"],
      }
    )
  found = findings(results)
  rows += [
    {
      "protocol": protocol,
      "quantity": "χ_W and χ_V drop from memorised to grokked",
      "ours": found["susceptibility_drops"],
    },
    {
      "protocol": protocol,
      "quantity": "pairs sharing an operand more influenced than pairs "
      "sharing none, at every stage",
      "ours": found["shared_operand_stronger"],
    },
  ]
  return rows


def plot(results: dict, out_dir: str) -> None:
  """The three figures, from ``results`` alone."""
  import matplotlib.pyplot as plt

  stages = results["stages"]
  bins = np.asarray(results["hist_bins"])
  centres = (bins[1:] + bins[:-1]) / 2
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), sharey=True)
  for ax, (stage, r) in zip(axes, stages.items()):
    ax.step(centres, r["corr_hist"], where="mid", label="train × val BIF")
    ax.step(
      centres,
      r["null_hist"],
      where="mid",
      color="0.6",
      label="null (other chain)",
    )
    ax.set_yscale("log")
    flag = "" if r["stationary"] else " — chains not stationary"
    ax.set_title(
      f"{stage}, step {r['step']} (val acc {r['val_acc']:.2f})"
      f"\nmean |r| {r['mean_abs_corr']:.3f}, null "
      f"{r['null_mean_abs_corr']:.3f}{flag}",
      fontsize=9,
    )
    ax.set_xlabel("Pearson correlation of per-pair losses")
  axes[0].set_ylabel("pairs (train, val)")
  axes[0].legend(fontsize=8)
  plotting.save_figure(fig, os.path.join(out_dir, "bif_distribution.png"))

  fig, ax = plt.subplots(figsize=(7, 3.6))
  width = 0.8 / len(RELATIONS)
  for j, relation in enumerate(RELATIONS):
    ax.bar(
      np.arange(len(stages)) + (j - 1.5) * width,
      [r["by_relation"][relation]["mean_corr"] for r in stages.values()],
      width,
      label=f"{relation}",
    )
  ax.axhline(0, color="k", lw=0.5)
  ax.set_xticks(
    np.arange(len(stages)),
    [f"{s}\nstep {r['step']}" for s, r in stages.items()],
  )
  ax.set_ylabel("mean BIF correlation")
  ax.set_title("train pair → val pair influence by shared residue")
  ax.legend(fontsize=8)
  plotting.save_figure(fig, os.path.join(out_dir, "bif_by_residue.png"))

  fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
  x = np.arange(len(stages))
  for ax, key, label in (
    (axes[0], "val_pairs", "χ, devinterp 2.0.1 (E_full centre)"),
    (axes[1], "val_pairs_restricted_center", "χ, restricted centre (= Cov_A)"),
  ):
    for j, restriction in enumerate(("W only", "V only", "W and V")):
      ax.bar(
        x + (j - 1) * 0.27,
        [r["susceptibility"][restriction][key] for r in stages.values()],
        0.27,
        label=restriction,
      )
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(x, [f"{s}\nstep {r['step']}" for s, r in stages.items()])
    ax.set_ylabel(f"{label}\nprobe: validation pairs", fontsize=8)
    ax.legend(fontsize=8)
  for stage, r in stages.items():
    axes[2].scatter(
      r["susceptibility"]["W only"]["per_class"],
      r["susceptibility"]["V only"]["per_class"],
      s=10,
      label=stage,
    )
  axes[2].set_xlabel("χ_W (validation pairs of one output class)")
  axes[2].set_ylabel("χ_V")
  axes[2].legend(fontsize=8)
  fig.suptitle(
    "susceptibilities of the restricted posteriors (devinterp "
    "2.0.1's definition)",
    y=1.02,
  )
  plotting.save_figure(fig, os.path.join(out_dir, "susceptibility.png"))
  plt.close("all")


def main(argv=None) -> dict:
  results = cli.run_stored_experiment(
    NAME, __doc__, CONFIGS, compute, plot, argv
  )
  print(results["headline"])
  t = results["timing"]
  if "sgld_steps_per_second_with" in t:
    print(
      f"SGLD chain-steps/s: {t['sgld_steps_per_second_without']:.0f} "
      f"without observables, {t['sgld_steps_per_second_with']:.0f} with "
      f"(load average {t['load_average']:.1f})"
    )
  return results


if __name__ == "__main__":
  main()
