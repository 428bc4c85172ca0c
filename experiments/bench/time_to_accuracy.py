"""Time to an accurate LLC: slt_jax end to end against devinterp's SGLD.

Part ``time_to_accuracy`` of ``experiments.bench`` (issue 22, part 4). On
deep linear networks of known λ (``slt_jax.known_cases.deep_linear``,
noiseless labels, Aoyagi's λ from ``slt_jax.theory.deep_linear_llc``), the
wall time until an estimate lies within ``accuracy`` (5%) of λ:

* **slt_jax**: ``slt_jax.llc.autotune`` (curvature, step-size ladders, chain
  extension; chains vmapped) run once per sampler, ``sgld`` and ``sghmc``
  (the library's best sampler on DLNs). Its time is the autotune wall time,
  compilation included; its estimate is ``report.result``, the tuned
  config's ``estimate_llc`` run inside autotune. Tuning is charged to
  slt_jax; whether the final estimate is within ``accuracy`` decides if it
  got there.
* **devinterp** 1.3.2: ``estimate_learning_coeff_with_summary`` with its
  SGLD on the same network in PyTorch (``nn.Linear`` without bias), the same
  nβ (passed explicitly), γ, minibatch size and ``num_chains`` (4), and, for
  free, the step size autotune chose for SGLD. PyTorch runs with 1 thread
  or the bench's count (``--torch-threads``, default 2), whichever an
  untimed pilot finds faster (busy cores can make 2 threads many times
  slower). One long run, sized from the pilot to take about
  ``cap_seconds`` (no burn-in); a callback stamps the wall time of every
  draw. At K checkpoints t (draws per chain) the running
  estimate is ``nβ (mean_{chains, draws in window} L_B - L_n(w*))`` over two
  windows: the second half of the draws so far (``half``; no tuned number
  needed) and the draws after the burn-in autotune chose for SGLD
  (``tuned_burnin``; also given for free). The time of checkpoint t is what
  4 chains of t draws cost: the sum over the (sequential) chains of the time
  from the chain's start to its draw t. devinterp's time to accuracy is the
  earliest checkpoint from which every later running estimate stays within
  ``accuracy`` (``first_time_within``), the smaller of the two windows';
  if neither gets there, the run's whole time is reported with the final
  error, and the ratio is a lower bound.

The ratio is devinterp's time over slt_jax's, per slt_jax sampler, with
``kind``: ``measured`` (both got there), ``lower_bound`` (devinterp did not
within its cap), ``upper_bound`` (slt_jax's final estimate missed, devinterp
got there) or ``neither``.

PyTorch's DataLoader (``batch_size``, ``shuffle=True``, ``drop_last=True``:
epoch-wise shuffling as slt_jax's) draws each minibatch with one index
operation (the dataset's ``__getitems__``), not the default per-example
collation, which would slow devinterp down several-fold on these small
networks: the loader does not inflate the ratio.

Networks of about 1e5 and 1e6 parameters are listed in ``not_run`` with the
reason (a CPU cannot run them within the benchmark's budget).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Optional, Sequence

import jax
import numpy as np

from experiments import tuning
from slt_jax import known_cases, theory

KINDS = ("measured", "lower_bound", "upper_bound", "neither")
WINDOWS = ("half", "tuned_burnin")


@dataclasses.dataclass(frozen=True)
class Network:
  """A deep linear network of the part.

  Attributes:
    label: its size class, e.g. ``"1e3"``.
    widths: ``(H_0, ..., H_L)``.
    rank: rank of the true map.
  """

  label: str
  widths: tuple[int, ...]
  rank: int

  @property
  def num_params(self) -> int:
    """``sum_i H_i H_{i-1}``."""
    return sum(a * b for a, b in zip(self.widths, self.widths[1:]))


@dataclasses.dataclass(frozen=True)
class Config:
  """What the part measures.

  Attributes:
    networks: the networks run, smallest first.
    not_run: networks listed but not run, with ``not_run_reason``.
    not_run_reason: why they were not run.
    num_examples: n (noiseless labels; nβ = n / ln n).
    batch_size: minibatch size of both tools.
    localization: γ.
    num_chains: chains of both tools.
    samplers: slt_jax samplers autotuned (``sgld`` first: devinterp gets
      its step size).
    accuracy: relative distance to λ that counts as accurate.
    tolerance: autotune's accepted relative discretisation bias.
    budget_grads: autotune's budget per (network, sampler).
    cap_seconds: devinterp's run is sized to take about this long (from a
      short untimed pilot), at most ``max_draws`` draws per chain.
    min_draws: fewest draws per chain of devinterp's run.
    max_draws: most draws per chain of devinterp's run.
    pilot_draws: draws of the pilot that measures devinterp's speed.
    checkpoints: running-estimate checkpoints (log-spaced draw counts).
  """

  networks: tuple[Network, ...]
  not_run: tuple[Network, ...] = ()
  not_run_reason: str = ""
  num_examples: int = 10_000
  batch_size: int = 500
  localization: float = 2.0
  num_chains: int = 4
  samplers: tuple[str, ...] = ("sgld", "sghmc")
  accuracy: float = 0.05
  tolerance: float = 0.05
  budget_grads: float = 2e6
  cap_seconds: float = 300.0
  min_draws: int = 200
  max_draws: int = 1_000_000
  pilot_draws: int = 200
  checkpoints: int = 200


CONFIGS = {
  "quick": Config(
    networks=(Network("tiny", (4, 3, 4), 1),),
    num_examples=2000,
    batch_size=500,
    budget_grads=2e5,
    cap_seconds=15.0,
    max_draws=20_000,
    pilot_draws=50,
    checkpoints=60,
  ),
  "default": Config(
    networks=(Network("1e3", (20, 25, 20), 1),),
    not_run=(
      Network("1e4", (70, 72, 70), 2),
      Network("1e5", (224, 224, 224), 2),
      Network("1e6", (707, 707, 707), 1),
    ),
    not_run_reason=(
      "not run on this CPU: autotune costs about nβ h / γ steps per "
      "relaxation time and each step grows with the parameter count, so "
      "these networks exceed the part's ~25 CPU-minute budget; sized for an "
      "accelerator"
    ),
    num_examples=2000,
    batch_size=500,
    budget_grads=2e6,
    cap_seconds=360.0,
  ),
}


def get_config(quick: bool) -> Config:
  """The default configuration, or the smoke-sized one."""
  return CONFIGS["quick" if quick else "default"]


def running_estimates(
  loss_CxT: np.ndarray,
  init_loss: float,
  nbeta: float,
  draws_K: Sequence[int],
  burnin: Optional[int] = None,
) -> np.ndarray:
  """Running LLC estimates of a per-draw loss trace at checkpoints.

  The estimate after t draws per chain is ``nbeta * (mean - init_loss)``,
  the mean over chains and over the draws ``[s, t)`` of each chain, with
  ``s = t // 2`` (``burnin`` None: the second half so far) or ``s = burnin``
  (nan while ``t <= burnin``).

  Args:
    loss_CxT: (chains, draws) minibatch losses.
    init_loss: L_n(w*).
    nbeta: n·β.
    draws_K: (K,) checkpoints t, each in ``[1, draws]``.
    burnin: a fixed number of discarded draws, or None.

  Returns:
    (K,) float64 estimates.

  >>> loss = np.array([[0.0, 1.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0]])
  >>> running_estimates(loss, 0.5, 2.0, [1, 2, 4]).tolist()
  [1.0, 3.0, 6.0]
  >>> running_estimates(loss, 0.5, 2.0, [1, 2, 4], burnin=1).tolist()
  [nan, 3.0, 5.0]
  """
  mean_T = np.asarray(loss_CxT, np.float64).mean(axis=0)
  cum = np.concatenate([[0.0], np.cumsum(mean_T)])
  draws_K = np.asarray(draws_K, np.int64)
  start_K = draws_K // 2 if burnin is None else np.full_like(draws_K, burnin)
  count_K = draws_K - start_K
  with np.errstate(invalid="ignore", divide="ignore"):
    mean_K = (cum[draws_K] - cum[np.minimum(start_K, draws_K)]) / count_K
  mean_K = np.where(count_K > 0, mean_K, np.nan)
  return nbeta * (mean_K - init_loss)


def first_time_within(
  seconds_K: Sequence[float],
  estimates_K: Sequence[float],
  target: float,
  accuracy: float,
) -> Optional[float]:
  """The earliest checkpoint time from which every later estimate is within
  ``accuracy`` of ``target`` (relative); None if the last one is not.

  Args:
    seconds_K: (K,) increasing checkpoint times.
    estimates_K: (K,) running estimates (nan counts as outside).
    target: the true value, nonzero.
    accuracy: relative tolerance, e.g. 0.05.

  >>> first_time_within([1, 2, 3, 4], [50, 98, 90, 103], 100.0, 0.05)
  4.0
  >>> first_time_within([1, 2, 3, 4], [50, 98, 101, 103], 100.0, 0.05)
  2.0
  >>> first_time_within([1, 2, 3], [99, 100, 80], 100.0, 0.05) is None
  True
  """
  est_K = np.asarray(estimates_K, np.float64)
  with np.errstate(invalid="ignore"):
    inside_K = np.abs(est_K / target - 1) <= accuracy
  if not inside_K.size or not inside_K[-1]:
    return None
  outside = np.flatnonzero(~inside_K)
  first = outside[-1] + 1 if outside.size else 0
  return float(np.asarray(seconds_K, np.float64)[first])


def checkpoint_draws(num_draws: int, count: int, first: int = 10) -> np.ndarray:
  """About ``count`` log-spaced draw counts in ``[min(first, T), T]``,
  increasing, ending at ``T = num_draws``.

  >>> checkpoint_draws(1000, 4).tolist()
  [10, 46, 215, 1000]
  """
  lo = min(first, num_draws)
  grid = np.geomspace(lo, num_draws, count)
  return np.unique(np.round(grid).astype(np.int64))


def draw_seconds(
  stamps_CxT: np.ndarray, starts_C: np.ndarray, draws_K: np.ndarray
) -> np.ndarray:
  """Wall time of ``chains`` sequential chains of t draws each, per t.

  Args:
    stamps_CxT: (chains, draws) ``time.perf_counter()`` after each draw.
    starts_C: (chains,) the time each chain's work began.
    draws_K: (K,) draw counts t >= 1.

  Returns:
    (K,) ``sum_c (stamps[c, t - 1] - starts[c])``.

  >>> stamps = np.array([[1.0, 2.0, 3.0], [5.0, 7.0, 9.0]])
  >>> draw_seconds(stamps, np.array([0.0, 3.0]), np.array([1, 3])).tolist()
  [3.0, 9.0]
  """
  elapsed_CxK = stamps_CxT[:, np.asarray(draws_K) - 1] - starts_C[:, None]
  return elapsed_CxK.sum(axis=0)


def ratio(devinterp: dict, slt: dict) -> dict:
  """devinterp's seconds over slt_jax's, and what kind of number it is.

  Args:
    devinterp: ``{"seconds": s, "reached": bool}`` (``s``: time to accuracy,
      or the run's whole time if not reached).
    slt: the same for one slt_jax sampler.

  >>> ratio({"seconds": 30.0, "reached": False},
  ...       {"seconds": 3.0, "reached": True})
  {'ratio': 10.0, 'kind': 'lower_bound'}
  """
  kind = {
    (True, True): "measured",
    (False, True): "lower_bound",
    (True, False): "upper_bound",
    (False, False): "neither",
  }[(bool(devinterp["reached"]), bool(slt["reached"]))]
  return {"ratio": devinterp["seconds"] / slt["seconds"], "kind": kind}


def _network_record(net: Network) -> dict:
  true_llc, multiplicity = theory.deep_linear_llc(net.widths, net.rank)
  return {
    "label": net.label,
    "widths": list(net.widths),
    "rank": net.rank,
    "num_params": net.num_params,
    "true_llc": true_llc,
    "multiplicity": multiplicity,
  }


def run_slt_jax(key, case, sampler: str, cfg: Config, true_llc: float) -> dict:
  """Autotunes ``sampler`` on ``case``; its row (time, estimate, trace)."""
  sampler_cfg = dataclasses.replace(
    case.cfg,
    sampler=sampler,
    batch_size=cfg.batch_size,
    num_chains=cfg.num_chains,
    localization=cfg.localization,
  )
  start = time.perf_counter()
  tuned, report, reason = tuning.autotune_or_reason(
    key,
    case.loss_fn,
    case.params,
    case.data,
    sampler_cfg,
    budget_grads=cfg.budget_grads,
    tolerance=cfg.tolerance,
  )
  if report is None:
    return {
      "sampler": sampler,
      "reached": False,
      "seconds": time.perf_counter() - start,
      "estimate": float("nan"),
      "reason": reason,
    }
  wall = time.perf_counter() - start
  estimate = (
    float("nan") if report.result is None else float(report.result.mean)
  )
  rel_err = estimate / true_llc - 1
  elapsed, trace = 0.0, []
  for row in report.rows:
    elapsed += row.seconds
    trace.append(
      {
        "phase": row.phase,
        "step_size": float(row.step_size),
        "estimate": float(np.asarray(row.estimate)),
        "seconds": elapsed,
      }
    )
  return {
    "sampler": sampler,
    "estimate": estimate,
    "rel_err": rel_err,
    "reached": bool(abs(rel_err) <= cfg.accuracy),
    "seconds": wall,
    "autotune_seconds": float(report.seconds),
    "settled": bool(report.settled),
    "reason": report.reason,
    "step_size": float(tuned.step_size),
    "num_burnin": int(tuned.num_burnin),
    "num_draws": int(tuned.num_draws),
    "num_chains": int(tuned.num_chains),
    "gradient_evaluations": int(report.gradient_evaluations),
    "gradients_per_second": report.gradient_evaluations / wall,
    "rows": trace,
  }


def torch_network(torch, factors: Sequence[np.ndarray]):
  """``nn.Sequential`` of bias-free ``nn.Linear`` holding copies of the
  factors ``W_i`` (``(H_i, H_{i-1})``, the layer's weight), float32."""
  layers = []
  for w in factors:
    w = np.asarray(w, np.float32)
    layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
      layer.weight.copy_(torch.tensor(w))
    layers.append(layer)
  return torch.nn.Sequential(*layers)


def _torch_loss(net, batch):
  """``0.5 mean_b |net(x_b) - y_b|^2``: ``deep_linear_loss`` in PyTorch."""
  x_BxH, y_BxH = batch
  return 0.5 * (net(x_BxH) - y_BxH).square().sum(dim=-1).mean()


def _loader(torch, x_NxH, y_NxH, batch_size: int):
  """Epoch-shuffled minibatches (last partial one dropped), each drawn with
  one index operation (``__getitems__``) rather than per-example collation.
  """

  class Batched(torch.utils.data.TensorDataset):
    def __getitems__(self, index: list) -> tuple:
      return tuple(t[index] for t in self.tensors)

  return torch.utils.data.DataLoader(
    Batched(x_NxH, y_NxH),
    batch_size=batch_size,
    shuffle=True,
    drop_last=True,
    collate_fn=lambda batch: batch,
  )


def _devinterp_call(torch, net, loader, *, num_draws, seed, kwargs, init_loss):
  """One ``estimate_learning_coeff_with_summary`` run with per-draw stamps.

  Returns:
    (its result dict, stamps (chains, draws), chain starts (chains,), the
    wall seconds of the call).
  """
  from devinterp.slt.sampler import estimate_learning_coeff_with_summary

  chains = kwargs["num_chains"]
  stamps_CxT = np.zeros((chains, num_draws))
  starts_C = np.zeros(chains)

  def stamp(chain: int, draw: int, **_):
    stamps_CxT[chain, draw] = time.perf_counter()
    if draw == num_draws - 1 and chain + 1 < chains:
      starts_C[chain + 1] = stamps_CxT[chain, draw]

  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    starts_C[0] = time.perf_counter()
    out = estimate_learning_coeff_with_summary(
      net,
      loader,
      callbacks=[stamp],
      evaluate=_torch_loss,
      num_draws=num_draws,
      num_burnin_steps=0,
      init_loss=init_loss,
      seed=seed,
      device="cpu",
      verbose=False,
      **kwargs,
    )
  return out, stamps_CxT, starts_C, time.perf_counter() - starts_C[0]


def run_devinterp(
  case,
  step_size: float,
  tuned_burnin: int,
  nbeta: float,
  cfg: Config,
  true_llc: float,
  seed: int,
) -> dict:
  """devinterp's SGLD on ``case`` at ``step_size``: its running estimates
  against wall time, and its time to accuracy (see the module docstring)."""
  import torch

  x_NxH = torch.tensor(np.asarray(case.data["x"], np.float32))
  y_NxH = torch.tensor(np.asarray(case.data["y"], np.float32))
  net = torch_network(torch, case.params)
  with torch.no_grad():
    init_loss = float(_torch_loss(net, (x_NxH, y_NxH)))
  loader = _loader(torch, x_NxH, y_NxH, cfg.batch_size)
  sgld = {"lr": step_size, "nbeta": nbeta, "localization": cfg.localization}
  pilot = {}
  for threads in [None] + sorted({1, torch.get_num_threads()}):
    torch.set_num_threads(threads or 1)
    _, _, _, pilot_seconds = _devinterp_call(
      torch,
      net,
      loader,
      num_draws=cfg.pilot_draws,
      seed=seed + 1,
      kwargs={"num_chains": 1, "optimizer_kwargs": dict(sgld)},
      init_loss=init_loss,
    )
    if threads is not None:  # The first call warms PyTorch up.
      pilot[str(threads)] = cfg.pilot_draws / pilot_seconds
  threads = max(pilot, key=pilot.get)
  torch.set_num_threads(int(threads))
  steps_per_second = pilot[threads]
  num_draws = int(
    np.clip(
      cfg.cap_seconds * steps_per_second / cfg.num_chains,
      cfg.min_draws,
      cfg.max_draws,
    )
  )
  out, stamps_CxT, starts_C, seconds = _devinterp_call(
    torch,
    net,
    loader,
    num_draws=num_draws,
    seed=seed,
    kwargs={"num_chains": cfg.num_chains, "optimizer_kwargs": dict(sgld)},
    init_loss=init_loss,
  )
  loss_CxT = np.asarray(out["loss/trace"], np.float64)
  draws_K = checkpoint_draws(num_draws, cfg.checkpoints)
  seconds_K = draw_seconds(stamps_CxT, starts_C, draws_K)
  running, reached_at = {}, {}
  for window in WINDOWS:
    burnin = tuned_burnin if window == "tuned_burnin" else None
    est_K = running_estimates(loss_CxT, init_loss, nbeta, draws_K, burnin)
    running[window] = est_K
    reached_at[window] = first_time_within(
      seconds_K, est_K, true_llc, cfg.accuracy
    )
  times = [t for t in reached_at.values() if t is not None]
  final = {w: float(running[w][-1]) for w in WINDOWS}
  return {
    "step_size": step_size,
    "nbeta": nbeta,
    "init_loss": init_loss,
    "num_chains": cfg.num_chains,
    "num_draws": num_draws,
    "tuned_burnin": tuned_burnin,
    "pilot_steps_per_second": pilot,
    "torch_threads": int(threads),
    "steps_per_second": cfg.num_chains * num_draws / seconds,
    "run_seconds": seconds,
    "llc_mean_all_draws": float(out["llc/mean"]),
    "running": {
      "draws": draws_K,
      "seconds": seconds_K,
      **{w: running[w] for w in WINDOWS},
    },
    "seconds_to_accuracy": reached_at,
    "reached": bool(times),
    "seconds": min(times) if times else float(seconds_K[-1]),
    "final_estimate": final,
    "final_rel_err": {w: final[w] / true_llc - 1 for w in WINDOWS},
  }


def time_to_accuracy(cfg: Config, seed: int) -> dict:
  """Runs every network of ``cfg``: slt_jax's samplers, then devinterp at
  the step size slt_jax's SGLD chose. Returns the part's payload."""
  import torch

  records = []
  for index, net in enumerate(cfg.networks):
    record = _network_record(net)
    true_llc = record["true_llc"]
    key = jax.random.fold_in(jax.random.key(seed), index)
    case = known_cases.deep_linear(
      key,
      net.widths,
      net.rank,
      cfg.num_examples,
      noise_std=0.0,
      localization=cfg.localization,
    )
    nbeta = case.cfg.resolve_nbeta(cfg.num_examples)
    record.update(nbeta=nbeta, slt_jax={})
    for sampler in cfg.samplers:
      row = run_slt_jax(key, case, sampler, cfg, true_llc)
      record["slt_jax"][sampler] = row
      print(
        f"time_to_accuracy {net.label} slt_jax {sampler}: "
        f"{row['estimate']:.4g} vs λ {true_llc:.4g} "
        f"({row.get('rel_err', float('nan')):+.1%}) in {row['seconds']:.1f} s",
        flush=True,
      )
    sgld = record["slt_jax"].get("sgld")
    if sgld is None or "step_size" not in sgld:
      record["devinterp"] = {"skipped": "no SGLD step size from autotune"}
      records.append(record)
      continue
    di = run_devinterp(
      case, sgld["step_size"], sgld["num_burnin"], nbeta, cfg, true_llc, seed
    )
    record["devinterp"] = di
    record["ratio"] = {
      s: ratio(di, row) for s, row in record["slt_jax"].items()
    }
    print(
      f"time_to_accuracy {net.label} devinterp: "
      + (
        f"within {cfg.accuracy:.0%} after {di['seconds']:.1f} s"
        if di["reached"]
        else f"not within {cfg.accuracy:.0%} in {di['seconds']:.1f} s "
        f"(final {di['final_rel_err']['half']:+.1%})"
      )
      + f"; ratios {record['ratio']}",
      flush=True,
    )
    records.append(record)
  return {
    "config": {
      **dataclasses.asdict(cfg),
      "torch_threads": torch.get_num_threads(),
    },
    "networks": records,
    "not_run": [
      {**_network_record(net), "reason": cfg.not_run_reason}
      for net in cfg.not_run
    ],
  }


def plot_network(ax, record: dict, accuracy: float) -> None:
  """Running estimate against wall time for one network: devinterp's two
  windows and its time to accuracy (dotted), slt_jax's autotune runs (dots,
  at the end of each run) and final estimates (stars), and the band
  ``λ (1 ± accuracy)``."""
  lam = record["true_llc"]
  ax.axhspan(
    lam * (1 - accuracy),
    lam * (1 + accuracy),
    color="0.85",
    label=f"λ ± {accuracy:.0%}",
  )
  ax.axhline(lam, color="0.4", lw=0.8)
  di = record.get("devinterp", {})
  if "running" in di:
    run = di["running"]
    for window, style in zip(WINDOWS, ("-", "--")):
      ax.plot(
        _floats(run["seconds"]),
        _floats(run[window]),
        style,
        color="C3",
        label=f"devinterp SGLD ({window})",
      )
    if di["reached"]:
      ax.axvline(
        di["seconds"],
        color="C3",
        ls=":",
        label=f"devinterp within {accuracy:.0%} from here",
      )
  for j, (sampler, row) in enumerate(record["slt_jax"].items()):
    color = f"C{j}"
    rows = row.get("rows", [])
    ax.plot(
      _floats([r["seconds"] for r in rows]),
      _floats([r["estimate"] for r in rows]),
      ".",
      color=color,
      alpha=0.5,
    )
    ax.plot(
      _floats([row["seconds"]]),
      _floats([row["estimate"]]),
      "*",
      ms=12,
      color=color,
      label=f"slt_jax {sampler} (autotune)",
    )
  ax.set_xscale("log")
  ax.set_ylim(0, 2 * lam)
  ax.set_xlabel("wall seconds")
  ax.set_ylabel("LLC estimate")
  ax.set_title(
    f"DLN {record['widths']} r={record['rank']}: d={record['num_params']}, "
    f"λ={lam:g}"
  )
  ax.legend(fontsize=7)


def _floats(values) -> np.ndarray:
  """Values read back from JSON as float64 (null becomes nan)."""
  return np.asarray(values, np.float64)


def device_line(payload: dict) -> dict:
  """Headline numbers: per network and sampler, the ratio and its kind."""
  return {
    rec["label"]: {
      s: [round(r["ratio"], 2), r["kind"]]
      for s, r in rec.get("ratio", {}).items()
    }
    for rec in payload["networks"]
  }
