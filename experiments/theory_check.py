"""Closed forms against the Jacobian rank, the Laplace prediction and SGLD.

For small quadratic networks in each regime of the closed forms this compares

  (a) the closed form (``theory.gaussian_llc``, ``modular_llc``,
      ``lazy_random_features_llc``, ``ntk_llc``),
  (b) the rank prediction ``r / 2``, r the float64 numerical rank of the
      Jacobian of the outputs on the training inputs (``theory.jacobian_rank``),
  (c) the finite-temperature (Laplace) prediction of the SGLD estimate,
      ``theory.predict_llc_hat`` (dense Hessian), at the paper's nbeta 26.4 and
      gamma 5,
  (d) the SGLD estimate of ``estimate_llc``, twice: near the asymptotic regime
      (nbeta 1e4, gamma 1, for (a)/(b)) and at the paper's nbeta and gamma
      (for (c)).

Targets are the network's own outputs at a random w* with standard normal
entries (teacher-student), so w* is an exact zero of the plain MSE
``0.5 mean_i |f(x_i) - y_i|^2``. Lazy rows are
``known_cases.lazy_random_features`` (W frozen through ``mask=``, V at the
least-squares fit of the one-hot labels); NTK rows fit the linearisation
``f(w0) + J(w0) (w - w0)`` to ``f(w0)``.

SGLD runs full batch with 4 chains. The step is ``eps = 0.1 / (nbeta h_max +
gamma)`` from the dense Hessian spectrum (at most the paper's 5e-4), which
inflates the stiffest direction's stationary variance by at most 2.5%.
Burn-in and draws are 3 and 20 relaxation times ``tau = 1 / (eps (nbeta
h_min + gamma))``, h_min the smallest of the r nonzero Hessian eigenvalues,
within the mode's bounds (at least 2000 draws; ``mixed`` records whether
the burn-in reached 3 tau).
``sgld_*_quadratic`` is what the same finite run gives on the quadratic
approximation (``theory.sgld_llc_hat_quadratic``): SGLD minus it is the
effect of the non-quadratic loss; it minus the prediction is the run's own
bias (step size, unrelaxed slow directions).

A row **agrees** when all three hold (each also reported on its own):
  * ``agree_rank``: ``closed_form == rank_prediction``;
  * ``agree_asym``: ``|sgld_asym - closed_form| / closed_form < 0.1``;
  * ``agree_paper``: ``|sgld_paper - finite_temp| / finite_temp < 0.1``.

Lazy scaling (Thm 5.2; the brief's "Thm 5.5"): for K < n,
``lambda = p K / 2``. Two lines are fitted by least squares (with intercept)
to the asymptotic SGLD estimates of the lazy rows: lambda against K at fixed
p (closed-form slope p / 2) and lambda against p at fixed K and n (closed-form
slope min(K, n) / 2 = K / 2).

    python -m experiments.theory_check [--quick] [--out DIR]

Writes ``DIR/results.json`` (``{"rows": [...], "lazy_scaling": {...}}``),
``DIR/theory_check.png`` (predicted against estimated, identity line) and
``DIR/lazy_scaling.png``; ``--replot`` redraws both from the former. No
paper figure: ``--paper`` runs the default. ``--quick`` has 14 rows, the
default 16 with 5x the step caps; runtimes (2 CPU cores) are in
``figures/README.md``, measured.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from jax.flatten_util import ravel_pytree

from experiments import cli
from slt_jax import known_cases, theory
from slt_jax.grokking import data as data_lib
from slt_jax.grokking import grokking_metrics, model, plotting
from slt_jax.grokking.config import DataConfig
from slt_jax.llc import estimate_llc
from slt_jax.llc.config import SGLDConfig

NAME = "theory_check"
ASYMPTOTIC = (1e4, 1.0)  # (nbeta, gamma) near the asymptotic regime.
PAPER = (128 / np.log(128), 5.0)  # the paper's nbeta = B / ln B and gamma.
PAPER_STEP = 5e-4
STEP_FACTOR = 0.1  # eps * (nbeta h_max + gamma).
REL_TOL = 0.1


class Case(NamedTuple):
  """One model at one point w*.

  Attributes:
    regime: regime name (``gaussian_over``, ``modular``, ``lazy``, ...).
    sizes: the sizes that define it (d, m, K, n, p).
    loss_fn: ``loss_fn(params, batch) -> scalar`` over all parameters.
    params: w* (all parameters).
    data: training batch (example axis first).
    outputs_fn: ``outputs_fn(params) -> (n, m)`` outputs on the training set.
    closed_form: the closed-form learning coefficient.
    moving: name of the only parameter that moves ("" = all of them).
    mask: ``estimate_llc`` mask matching ``moving``.
    extra: regime-specific fields for the row.
  """

  regime: str
  sizes: dict
  loss_fn: Callable
  params: Any
  data: Any
  outputs_fn: Callable
  closed_form: float
  moving: str = ""
  mask: Optional[Callable] = None
  extra: dict = {}

  def embed(self, moving_params):
    """Full parameters from the moving ones (the rest stay at w*)."""
    if not self.moving:
      return moving_params
    return {**self.params, self.moving: moving_params}

  def moving_params(self):
    return self.params[self.moving] if self.moving else self.params


def teacher_loss(apply_fn: Callable) -> Callable:
  """``loss((params, (x, y))) = 0.5 mean_i |apply_fn(params, x_i) - y_i|^2``."""

  def loss_fn(params, batch):
    x, y_NxM = batch
    return 0.5 * jnp.mean(jnp.sum(jnp.square(apply_fn(params, x) - y_NxM), -1))

  return loss_fn


def linearised(apply_fn: Callable, params0) -> Callable:
  """``apply_lin(params, x) = f(x; w0) + J(w0) (params - w0)`` (a JVP)."""

  def apply_lin(params, x):
    w0 = jax.tree.map(lambda a, b: a.astype(b.dtype), params0, params)
    delta = jax.tree.map(jnp.subtract, params, w0)
    out, tangent = jax.jvp(lambda w: apply_fn(w, x), (w0,), (delta,))
    return out + tangent

  return apply_lin


def _normal_params(key, K: int, d: int, m: int) -> dict:
  key_w, key_v = jax.random.split(key)
  return {
    "W": jax.random.normal(key_w, (K, d)),
    "V": jax.random.normal(key_v, (m, K)),
  }


def teacher_case(
  regime: str,
  apply_fn: Callable,
  params,
  x,
  closed_form: float,
  sizes: dict,
  extra: Optional[dict] = None,
) -> Case:
  """Teacher-student case: targets ``apply_fn(params, x)``, plain MSE."""
  y = apply_fn(params, x)
  return Case(
    regime,
    sizes,
    teacher_loss(apply_fn),
    params,
    (x, y),
    lambda w: apply_fn(w, x),
    closed_form,
    extra=extra or {},
  )


def gaussian_case(key, d: int, m: int, K: int, n: int) -> Case:
  """Gaussian inputs (n, d), w* standard normal; Thm 4.1/4.2 closed form."""
  key_x, key_w = jax.random.split(key)
  x_NxD = jax.random.normal(key_x, (n, d))
  over = K >= theory.gaussian_critical_width(d, m)
  regime = "gaussian_over" if over else "gaussian_under"
  return teacher_case(
    regime,
    model.apply_one_hot,
    _normal_params(key_w, K, d, m),
    x_NxD,
    theory.gaussian_llc(d, m, K),
    {"d": d, "m": m, "K": K, "n": n},
  )


def modular_case(key, p: int, K: int, n: int) -> Case:
  """One-hot pairs of a seeded split, w* standard normal; modular_llc (mse)."""
  key_data, key_w = jax.random.split(key)
  pairs = data_lib.modular_arithmetic(
    key_data, DataConfig(p=p, num_train=n)
  ).train.pairs
  return teacher_case(
    "modular",
    model.apply,
    _normal_params(key_w, K, 2 * p, p),
    pairs,
    theory.modular_llc(p, K, np.asarray(pairs), "mse"),
    {"p": p, "m": p, "K": K, "n": n},
  )


def ntk_case(base: Case) -> Case:
  """The linearisation of ``base``'s network at its w*; ``theory.ntk_llc``."""
  x = base.data[0]
  apply_fn = model.apply if base.regime == "modular" else model.apply_one_hot
  with jax.enable_x64(True):
    flat_P, unravel = ravel_pytree(
      jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), base.params)
    )
    j_OxP = np.asarray(
      jax.jacfwd(lambda f: jnp.ravel(apply_fn(unravel(f), x)))(flat_P)
    )
  case = teacher_case(
    "ntk",
    linearised(apply_fn, base.params),
    base.params,
    x,
    theory.ntk_llc(j_OxP),
    dict(base.sizes),
    {"base_regime": base.regime, "generic_formula": base.closed_form},
  )
  return case


def lazy_case(key, p: int, K: int, n: int) -> Case:
  """``known_cases.lazy_random_features``: W frozen, V at least squares."""
  known = known_cases.lazy_random_features(
    key, p, K, n, init_scale=2.0, step_size=PAPER_STEP
  )
  pairs = known.data.pairs
  return Case(
    "lazy",
    {"p": p, "m": p, "K": K, "n": n},
    known.loss_fn,
    known.params,
    known.data,
    lambda w: model.apply(w, pairs),
    known.true_llc,
    moving="V",
    mask=known.mask,
    extra={"init_scale": 2.0},
  )


@dataclasses.dataclass(frozen=True)
class TheoryConfig:
  """Case sizes and SGLD step caps.

  Attributes:
    gaussian: Gaussian-input cases (d, m, K, n).
    modular: modular one-hot cases (p, K, n).
    ntk_modular: add the linearisation of the first modular case (the
      smallest Gaussian case's is always added).
    lazy_p_fixed: p of the lazy rows scanned over ``lazy_K``.
    lazy_K: widths of those rows.
    lazy_K_fixed: K of the lazy rows scanned over ``lazy_p``.
    lazy_p: primes of those rows.
    lazy_n: training pairs of every lazy row.
    max_burnin: cap on the burn-in (3 relaxation times otherwise).
    min_draws: floor on the draws (20 relaxation times otherwise) ...
    max_draws: ... and their cap.
    num_chains: chains per estimate.
  """

  gaussian: tuple[tuple[int, int, int, int], ...]
  modular: tuple[tuple[int, int, int], ...]
  ntk_modular: bool
  lazy_p_fixed: int
  lazy_K: tuple[int, ...]
  lazy_K_fixed: int
  lazy_p: tuple[int, ...]
  lazy_n: int
  max_burnin: int
  min_draws: int
  max_draws: int
  num_chains: int


_GAUSSIAN = ((3, 2, 8, 100), (4, 1, 2, 100), (4, 2, 2, 100), (3, 6, 5, 100))
_QUICK = TheoryConfig(
  gaussian=_GAUSSIAN,
  modular=((5, 2, 13), (7, 3, 25), (5, 6, 10)),
  ntk_modular=True,
  lazy_p_fixed=7,
  lazy_K=(2, 4, 8),
  lazy_K_fixed=8,
  lazy_p=(5, 7, 11),
  lazy_n=20,
  max_burnin=20000,
  min_draws=2000,
  max_draws=40000,
  num_chains=4,
)
_DEFAULT = dataclasses.replace(
  _QUICK,
  gaussian=_GAUSSIAN + ((4, 3, 5, 100),),
  lazy_K=(2, 4, 6, 8),
  max_burnin=100000,
  max_draws=200000,
)
CONFIGS = {
  "smoke": TheoryConfig(
    gaussian=((2, 1, 2, 20),),
    modular=((3, 1, 4),),
    ntk_modular=False,
    lazy_p_fixed=3,
    lazy_K=(2, 3),
    lazy_K_fixed=3,
    lazy_p=(3, 5),
    lazy_n=6,
    max_burnin=200,
    min_draws=100,
    max_draws=400,
    num_chains=2,
  ),
  "quick": _QUICK,
  "default": _DEFAULT,
  "paper": _DEFAULT,
}


def build_cases(key, cfg: TheoryConfig) -> list[Case]:
  """All cases of a configuration."""
  keys = iter(jax.random.split(key, 64))
  gaussian = [gaussian_case(next(keys), *s) for s in cfg.gaussian]
  modular = [modular_case(next(keys), *s) for s in cfg.modular]
  ntk_bases = [min(gaussian, key=lambda c: c.sizes["K"])]
  ntk_bases += modular[:1] if cfg.ntk_modular else []
  p0, k0, n = cfg.lazy_p_fixed, cfg.lazy_K_fixed, cfg.lazy_n
  lazy_sizes = sorted(
    {(p0, K) for K in cfg.lazy_K} | {(p, k0) for p in cfg.lazy_p}
  )
  # One key for every lazy row: rows with the same p share a training split.
  key_lazy = next(keys)
  lazy = [lazy_case(key_lazy, p, K, n) for p, K in lazy_sizes]
  return gaussian + modular + [ntk_case(c) for c in ntk_bases] + lazy


def sgld_config(
  h_max: float, h_min: float, nbeta: float, gamma: float, cfg: TheoryConfig
) -> tuple[SGLDConfig, float]:
  """Full-batch SGLD with the step from the spectrum and tau-based lengths."""
  eps = min(PAPER_STEP, STEP_FACTOR / (nbeta * h_max + gamma))
  tau = 1.0 / (eps * (nbeta * h_min + gamma))
  burnin = int(np.clip(np.ceil(3 * tau), 200, cfg.max_burnin))
  draws = int(np.clip(np.ceil(20 * tau), cfg.min_draws, cfg.max_draws))
  return SGLDConfig(
    step_size=eps,
    nbeta=float(nbeta),
    localization=gamma,
    num_chains=cfg.num_chains,
    num_draws=draws,
    num_burnin=burnin,
    batch_size=None,
  ), tau


def run_sgld(
  key, case: Case, sgld: SGLDConfig, tau: float, eig_P: np.ndarray
) -> dict:
  """One ``estimate_llc`` call, its summary, and the expectation of the same
  run on the quadratic approximation (``theory.sgld_llc_hat_quadratic``)."""
  res = estimate_llc(
    key,
    case.loss_fn,
    case.params,
    case.data,
    sgld,
    mask=case.mask,
    progress=False,
    warn=False,
  )
  d = res.diagnostics
  return {
    "mean": float(res.mean),
    "std": float(res.std),
    "nbeta": res.nbeta,
    "gamma": sgld.localization,
    "step_size": sgld.step_size,
    "num_burnin": sgld.num_burnin,
    "num_draws": sgld.num_draws,
    "tau": tau,
    "mixed": bool(sgld.num_burnin >= 3 * tau),
    "stationary": bool(d.stationary),
    "rhat": float(d.rhat),
    "ess": float(d.ess),
    "diverged_chains": int(d.diverged.sum()),
    "quadratic_expectation": theory.sgld_llc_hat_quadratic(
      eig_P,
      res.nbeta,
      sgld.localization,
      sgld.step_size,
      sgld.num_burnin,
      sgld.num_draws,
    ),
  }


def check_case(key, case: Case, cfg: TheoryConfig) -> dict:
  """(a)-(d) for one case, as one results row."""
  start = time.perf_counter()
  moving = case.moving_params()
  loss_moving = lambda w, batch: case.loss_fn(case.embed(w), batch)
  rank = theory.jacobian_rank(lambda w: case.outputs_fn(case.embed(w)), moving)
  eig_P = theory.hessian_eigenvalues(loss_moving, moving, case.data)
  h_max = float(eig_P[-1])
  h_min = float(eig_P[-rank.rank]) if rank.rank else h_max
  laplace = {
    name: theory.predict_llc_hat(loss_moving, moving, case.data, nbeta, gamma)
    for name, (nbeta, gamma) in (("paper", PAPER), ("asym", ASYMPTOTIC))
  }
  key_asym, key_paper = jax.random.split(key)
  asym = run_sgld(
    key_asym, case, *sgld_config(h_max, h_min, *ASYMPTOTIC, cfg), eig_P
  )
  paper = run_sgld(
    key_paper, case, *sgld_config(h_max, h_min, *PAPER, cfg), eig_P
  )
  closed, finite = case.closed_form, laplace["paper"].llc_hat
  row = {
    "regime": case.regime,
    "sizes": case.sizes,
    "num_params": int(ravel_pytree(moving)[0].size),
    "closed_form": closed,
    "rank_prediction": rank.rank / 2,
    "rank_gap": rank.gap,
    "h_max": h_max,
    "h_min_nonzero": h_min,
    "finite_temp_prediction": finite,
    "finite_temp_gradient_term": laplace["paper"].gradient_term,
    "finite_temp_asym": laplace["asym"].llc_hat,
    "sgld_mean": asym["mean"],
    "sgld_std": asym["std"],
    "sgld_asym_mean": asym["mean"],
    "sgld_asym_std": asym["std"],
    "sgld_paper_mean": paper["mean"],
    "sgld_paper_std": paper["std"],
    "sgld_asym_quadratic": asym["quadratic_expectation"],
    "sgld_paper_quadratic": paper["quadratic_expectation"],
    "rel_err_asym": (asym["mean"] - closed) / closed,
    "rel_err_paper": (paper["mean"] - finite) / finite,
    "agree_rank": bool(closed == rank.rank / 2),
    "sgld_asym": asym,
    "sgld_paper": paper,
    **case.extra,
  }
  row["agree_asym"] = bool(abs(row["rel_err_asym"]) < REL_TOL)
  row["agree_paper"] = bool(abs(row["rel_err_paper"]) < REL_TOL)
  row["agree"] = row["agree_rank"] and row["agree_asym"] and row["agree_paper"]
  row["seconds"] = time.perf_counter() - start
  return row


def lazy_scaling(rows: list[dict], cfg: TheoryConfig) -> dict:
  """Lines fitted to the asymptotic SGLD estimates: vs K, vs p."""
  lazy = [r for r in rows if r["regime"] == "lazy"]
  out = {}
  for name, fixed, var, value in (
    ("vs_K", "p", "K", cfg.lazy_p_fixed),
    ("vs_p", "K", "p", cfg.lazy_K_fixed),
  ):
    sel = sorted(
      (r for r in lazy if r["sizes"][fixed] == value),
      key=lambda r: r["sizes"][var],
    )
    x = np.array([r["sizes"][var] for r in sel], float)
    closed_slope = value / 2 if var == "K" else min(value, cfg.lazy_n) / 2
    out[name] = {
      "fixed": {fixed: value, "n": cfg.lazy_n},
      "x": x,
      "sgld_mean": [r["sgld_asym_mean"] for r in sel],
      "sgld_std": [r["sgld_asym_std"] for r in sel],
      "closed_form": [r["closed_form"] for r in sel],
      "fit": grokking_metrics.linear_fit(x, [r["sgld_asym_mean"] for r in sel]),
      "closed_form_slope": closed_slope,
    }
    out[name]["slope_rel_err"] = out[name]["fit"]["slope"] / closed_slope - 1
  return out


def plot(results: dict, out_dir: str) -> None:
  """Predicted against estimated LLC, and the lazy-scaling fits."""
  rows, scaling = results["rows"], results["lazy_scaling"]
  names = [
    r["regime"] + "".join(f" {k}{v}" for k, v in r["sizes"].items())
    for r in rows
  ]
  get = lambda key: np.array([r[key] for r in rows], float)
  fig = plotting.plot_estimates_vs_truth(
    names, get("closed_form"), get("sgld_asym_mean"), get("sgld_asym_std")
  )
  ax = fig.axes[0]
  ax.containers[0].set_label("nbeta 1e4, gamma 1: closed form vs SGLD")
  ax.errorbar(
    get("finite_temp_prediction"),
    get("sgld_paper_mean"),
    yerr=get("sgld_paper_std"),
    fmt="s",
    mfc="none",
    capsize=3,
    label="nbeta 26.4, gamma 5: Laplace vs SGLD",
  )
  ax.set(xlabel="predicted LLC", ylabel="SGLD estimate (mean ± chain std)")
  for axis in (ax.xaxis, ax.yaxis):
    axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
    axis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  ax.legend(loc="upper left", fontsize=7)
  plotting.save_figure(fig, os.path.join(out_dir, f"{NAME}.png"), dpi=100)
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
  colors = ("tab:blue", "tab:red")
  for ax, (name, s), color in zip(axes, scaling.items(), colors):
    var = "K" if name == "vs_K" else "p"
    plotting.plot_linear_scaling(
      ax,
      s["x"],
      np.array(s["sgld_mean"])[None],
      s["fit"],
      "SGLD",
      color,
      reference_slope=s["closed_form_slope"],
    )
    ax.lines[-1].set_label(f"closed-form slope {s['closed_form_slope']:g}")
    ax.set(xlabel=var, ylabel="LLC", title=f"lazy RF, {s['fixed']}")
    ax.legend(fontsize=7)
  fig.tight_layout()
  plotting.save_figure(fig, os.path.join(out_dir, "lazy_scaling.png"), dpi=100)


def compute(mode: str, seed: int) -> dict:
  """Every case of ``CONFIGS[mode]``; the results payload."""
  cfg = CONFIGS[mode]
  key_cases, key_sgld = jax.random.split(jax.random.key(seed))
  cases = build_cases(key_cases, cfg)
  rows = []
  for key, case in zip(jax.random.split(key_sgld, len(cases)), cases):
    rows.append(check_case(key, case, cfg))
    r = rows[-1]
    print(
      f"{r['regime']:15s} {str(r['sizes']):38s} "
      f"closed {r['closed_form']:6.1f}"
      f" rank {r['rank_prediction']:6.1f} asym {r['sgld_asym_mean']:7.2f}"
      f"±{r['sgld_asym_std']:.2f} | "
      f"Laplace {r['finite_temp_prediction']:6.2f}"
      f" paper {r['sgld_paper_mean']:6.2f}±{r['sgld_paper_std']:.2f}"
      f" (quadratic runs {r['sgld_asym_quadratic']:.2f},"
      f" {r['sgld_paper_quadratic']:.2f})"
      f" {'agree' if r['agree'] else 'DISAGREE'} ({r['seconds']:.0f}s)",
      flush=True,
    )
  return {
    "name": NAME,
    "mode": mode,
    "config": dataclasses.asdict(cfg),
    "settings": {
      "asymptotic": {"nbeta": ASYMPTOTIC[0], "gamma": ASYMPTOTIC[1]},
      "paper": {"nbeta": PAPER[0], "gamma": PAPER[1], "max_step": PAPER_STEP},
      "step_factor": STEP_FACTOR,
      "rel_tol": REL_TOL,
    },
    "rows": rows,
    "lazy_scaling": lazy_scaling(rows, cfg),
    "num_agree": sum(r["agree"] for r in rows),
    "num_rows": len(rows),
  }


def main(argv=None) -> dict:
  args, mode = cli.parse_mode(__doc__, argv=argv)
  return cli.compute_then_plot(
    NAME, args, lambda: compute(mode, args.seed), plot
  )


if __name__ == "__main__":
  main()
