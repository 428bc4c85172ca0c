"""Speed of the LLC engine and the trainer, side by side with PyTorch.

Command::

  python -m experiments.bench [--quick] [--out DIR] [--seed N]
                              [--only PART ...] [--replot]
                              [--device-report] [--no-torch] [--no-blackjax]
                              [--torch-threads N]

(``make bench`` runs the quick version in ``.venv-bench``, which has the
``bench`` extra: torch 2.13.0 CPU and devinterp 1.3.2.)

All parts run in one process, on one machine, in one run, so the ratios are
measured side by side. The package holds one module per part and
times ``slt_jax.llc`` through its public API only (``compile_sweep``,
``Sweep.run``, ``Sweep.chunk_size``, ``Sweep.memory_analysis``,
``estimate_llc``, ``SGLDSettings``):

1. **LLC** (``llc``, ``torch_baselines``). The reference workload (p=53,
   K=1024, train frac 0.4, centered MSE, SGLD eps 5e-4, gamma 5, nbeta =
   128/ln 128, minibatch 128, 3 chains x (100 burn-in + 500 draws)) at C
   checkpoints of one slt_jax training run (3000 steps of the recipe): (a)
   slt_jax warm (a ``Sweep`` compiled and run once on one chunk first, so
   compilation is excluded; backend compile time inside the timed run is
   recorded), (b) devinterp's ``estimate_learning_coeff_with_summary`` on
   the same weights copied into a PyTorch model (one-hot inputs,
   ``nn.Linear`` without bias), (c) a plain eager PyTorch loop over chains,
   (d) the blackjax 1.7 peer (``blackjax_peer``: ``blackjax.sgld`` vmapped
   over checkpoints x chains in one jit, what a JAX user writes; compiled
   before it is timed). (a) runs twice: with the configured noise
   (``slt_jax``, ``ratio_vs_*``) and with ``noise="counter_hash"``
   (``slt_jax_counter_hash``, ``counter_hash_ratio_vs_*``).
   Reports wall time, SGLD steps/s (chains x steps x C / time), the ratios,
   and whether (a) and (b) agree.
2. **Settings grid** (``llc.settings_grid``, issue 11). The same budget for
   the 9 settings eps in {2.5e-4, 5e-4, 1e-3} x gamma in {2.5, 5, 10} at 10
   checkpoints (1 with ``--quick``): one ``estimate_llc`` call with an
   ``SGLDSettings`` grid against nine calls, each timed with compilation
   (wall, compile count and seconds) and warm (steady SGLD steps/s).
3. **Roofline** (``roofline``). float32 matmul FLOP/s (square and the
   model's shapes, one chain and a CPU chunk's chains batched), the cost of
   one standard normal per PRNG implementation (drawn as the kernel draws
   it, with ``sgld.gaussian_noise`` over the parameter pytree), and the time
   of one chain-step split into matmul at the measured peak, noise (its
   in-situ cost: the same chunk timed with ``SGLDConfig(noise="zeros")``)
   and the rest. One SGLD step executes 14·B·K·p matmul FLOPs
   (``slt_jax.grokking.model.apply`` forms the first layer as a one-hot matmul:
   forward ``x Wᵀ`` and ``h² Vᵀ``, backward ``dV``, ``dh`` and ``dW``;
   elementwise work not counted), of which the 6·B·K·p of the gather form
   are necessary; both are reported.
4. **Profile** (``profile``). XLA's own per-op times of one CPU chunk
   (a ``jax.profiler`` trace), summed into matmul, noise and update,
   permutation and other, for the configured noise and ``counter_hash``,
   with the costliest ops.
5. **Scaling** (``scaling``). Throughput against the number of points
   batched in one program (chunk = all points), time and XLA peak memory
   against ``SGLDConfig.chunk_size``, and time against the number of forced
   host devices (subprocesses with ``--xla_force_host_platform_device_count``).
6. **Training** (``training``). Steps/s (and GFLOP/s of model math) of
   ``slt_jax.grokking.train.train`` for 1, 8 and 64 vmapped runs against a plain
   PyTorch Adam loop (coupled L2) on the same model.
7. **Forms** (``forms``, issue 14). SGLD and training steps/s of the
   network's two first-layer forms (``slt_jax.grokking.model.FORMS``: one-hot matmul
   and gather), side by side, and which one is faster on this backend
   against ``model.default_form()``.
8. **Time to accuracy** (``time_to_accuracy``, issue 22). On deep linear
   networks of known λ, the wall time until the estimate is within 5% of λ:
   slt_jax's ``autotune`` end to end (SGLD and SGHMC, tuning included)
   against devinterp's SGLD (4 chains, the step size slt_jax's tuner chose
   for SGLD given for free), and their ratio. Needs torch and devinterp;
   ``--only time_to_accuracy`` skips the reference weights (see
   ``time_to_accuracy`` for the definitions; ``figures/
   bench_time_to_accuracy/`` holds a run).

PyTorch runs single-process with ``torch.set_num_threads(2)``, or 1 thread
when a first check finds 2 threads much slower (busy cores; see
``BenchConfig.torch_threads``, ``--torch-threads``). Without torch
(or with ``--no-torch``) the PyTorch parts are skipped with a message, as is
(b) without devinterp, and (d) without blackjax (or with ``--no-blackjax``).
The CPU model and its flags are recorded (``cpu``). ``--only`` runs the
named parts (``llc``, ``settings_grid``, ``roofline``, ``profile``,
``scaling``, ``training``, ``forms``, ``time_to_accuracy``; the default is
every part but ``time_to_accuracy``, and the reference weights are trained
for every part but that one). ``--device-report`` prints one compact JSON
line of the headline numbers. Writes ``DIR/results.json``,
``DIR/llc_speed.png``, ``DIR/scaling.png`` and ``DIR/time_to_accuracy.png``
(``report``; default ``figures/bench/``); ``--replot`` only redraws the
figures from ``DIR/results.json``.

Expected runtime on 2 idle CPU cores: 30–60 minutes (57 on 2026-12-01; ``--quick``: about
6; ``--quick --only settings_grid``: about 2); busy cores can double it.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import tempfile
import time
from typing import Optional, Sequence

import jax

from experiments import cli, results
from experiments.bench import (
  forms,
  llc,
  profile,
  report,
  roofline,
  scaling,
  time_to_accuracy,
  training,
  workload,
)
from slt_jax import persist
from slt_jax.grokking import losses

NAME = "bench"
PARTS = (
  "llc",
  "settings_grid",
  "roofline",
  "profile",
  "scaling",
  "training",
  "forms",
  "time_to_accuracy",
)
# time_to_accuracy (about 20 CPU-minutes, its own output folder) runs only
# when named; it is also the one part without the reference weights.
DEFAULT_PARTS = tuple(p for p in PARTS if p != "time_to_accuracy")


def _max_rss() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _flags(parser) -> None:
  parser.add_argument(
    "--only",
    nargs="+",
    choices=PARTS,
    default=DEFAULT_PARTS,
    metavar="PART",
    help=f"run only these parts (of {', '.join(PARTS)}; default: all "
    "but time_to_accuracy)",
  )
  parser.add_argument(
    "--device-report",
    action="store_true",
    help="print one compact JSON line of the headline numbers at the end",
  )
  parser.add_argument(
    "--no-torch",
    action="store_true",
    help="skip the PyTorch and devinterp baselines",
  )
  parser.add_argument(
    "--no-blackjax", action="store_true", help="skip the blackjax peer"
  )
  parser.add_argument(
    "--torch-threads",
    type=int,
    default=None,
    help="PyTorch threads (default: 2, or 1 when the "
    "cores are busy enough that 1 is faster)",
  )


def _measure(args) -> dict:
  """Runs the selected parts; returns the results payload."""
  cfg = workload.get_config(args.quick)
  parts = set(args.only)
  load_start = workload.load()
  start = time.perf_counter()
  bt, torch_status = llc.import_torch(args.no_torch)
  if bt is not None:
    bt.torch.set_num_threads(args.torch_threads or cfg.torch_threads)
    bt.torch.manual_seed(args.seed)
  bj, torch_status["blackjax_peer"] = llc.import_blackjax(args.no_blackjax)
  key_ref, key_llc, key_train = jax.random.split(jax.random.key(args.seed), 3)
  payload = {
    "config": {
      **dataclasses.asdict(cfg),
      "quick": args.quick,
      "seed": args.seed,
      "parts": [p for p in PARTS if p in parts],
    },
    "load_average": {"start": load_start},
    "baselines": torch_status,
    "cpu": results.cpu_info(),
  }
  if "time_to_accuracy" in parts:
    if bt is None or not torch_status.get("devinterp"):
      payload["time_to_accuracy"] = {
        "skipped": torch_status.get("devinterp_message")
        or torch_status.get("message")
      }
    else:
      payload["time_to_accuracy"] = time_to_accuracy.time_to_accuracy(
        time_to_accuracy.get_config(args.quick), args.seed
      )
  if not parts - {"time_to_accuracy"}:
    return _finish(payload, start)
  ref = workload.reference_weights(cfg, key_ref)
  print(
    f"w*: {cfg.train_steps} recipe steps, final train/val acc "
    f"{ref['summary']['final_train_acc']:.2f}/"
    f"{ref['summary']['final_val_acc']:.2f}"
  )
  engine = workload.Engine(
    losses.make_loss("centered_mse"), ref["dataset"].train
  )
  payload["reference"] = {
    **ref["summary"],
    "nbeta": cfg.sgld.resolve_nbeta(engine.n),
    "steps_per_chain": workload.steps_per_chain(cfg.sgld),
  }
  llc_rows = None
  if "llc" in parts:
    llc_rows = llc.side_by_side(
      cfg,
      engine,
      ref,
      key_llc,
      bt,
      torch_status,
      args.seed,
      args.torch_threads,
      bj=bj,
    )
    payload["llc"] = llc_rows
    payload["agreement"] = {
      name: llc.agreement(llc_rows, name, cfg.sgld.num_chains)
      for name in (
        "slt_jax_counter_hash",
        "devinterp",
        "torch_loop",
        "blackjax",
      )
    }
  if "settings_grid" in parts:
    payload["settings_grid"] = llc.settings_grid(cfg, engine, ref, key_llc)
  if "roofline" in parts:
    payload["roofline"] = roofline.roofline(
      cfg, llc_rows, bt, engine, ref, key_llc
    )
  if "profile" in parts:
    payload["profile"] = profile.profile(cfg, engine, ref, key_llc)
  if "scaling" in parts:
    with tempfile.TemporaryDirectory() as tmp:
      w_star_path = os.path.join(tmp, "w_star.npz")
      persist.save_npz(w_star_path, ref["checkpoints"])
      payload["scaling"] = scaling.scaling(
        cfg, engine, ref, key_llc, w_star_path, args.seed
      )
  if "training" in parts:
    payload["training"] = training.training(
      cfg, ref["dataset"], key_train, bt, args.torch_threads
    )
  if "forms" in parts:
    payload["forms"] = forms.forms(cfg, ref, key_llc)
  return _finish(payload, start)


def _finish(payload: dict, start: float) -> dict:
  """Adds the end load average, the peak RSS and the wall time."""
  payload["load_average"]["end"] = workload.load()
  payload["max_rss_bytes"] = _max_rss()
  payload["wall_seconds"] = time.perf_counter() - start
  return payload


def main(argv: Optional[Sequence[str]] = None) -> dict:
  """Runs the benchmark (or, with ``--replot``, only redraws its figures)
  and writes its outputs; returns the payload."""
  args = cli.parse_args(__doc__, _flags, argv)
  payload = cli.compute_then_plot(
    NAME, args, lambda: _measure(args), report.plot
  )
  if not args.replot:
    loads = payload["load_average"]
    print(
      f"wrote {cli.output_dir(NAME, args.out)}/results.json in "
      f"{payload['wall_seconds']:.0f} s; load average "
      f"{loads['start']} -> {loads['end']}"
    )
  if args.device_report:
    print(report.device_report(payload))
  return payload


if __name__ == "__main__":
  main()
