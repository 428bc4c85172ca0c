"""The benchmark's figures and its one-line report.

``plot`` draws only from a results payload (a dict read back from
results.json), so ``python -m experiments.bench --replot --out DIR`` redraws
``DIR/llc_speed.png`` and ``DIR/scaling.png`` without computing anything
(``experiments.cli.compute_then_plot``), and ``DIR/time_to_accuracy.png``
when that part ran. Panels of parts that did not run (``--only``) are left
out.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Callable

import numpy as np

from experiments.bench import time_to_accuracy
from slt_jax.grokking import plotting


def _llc_rates(ax, payload: dict) -> None:
  rows = payload["llc"]
  methods = _methods(rows)
  xs = np.arange(len(rows))
  for j, name in enumerate(methods):
    vals = [r[name]["steps_per_second"] if r.get(name) else 0 for r in rows]
    width = 0.8 / len(methods)
    ax.bar(xs + (j - (len(methods) - 1) / 2) * width, vals, width, label=name)
  ax.set_xticks(xs, [f"C={r['C']}" for r in rows])
  ax.set_ylabel("SGLD steps / s")
  ax.set_title("reference LLC workload")
  ax.legend()


def _llc_estimates(ax, payload: dict) -> None:
  rows = payload["llc"]
  last = rows[-1]
  xs = np.arange(last["C"])
  for j, name in enumerate(_methods(rows)):
    per = last[name]["per_checkpoint"]
    ax.errorbar(
      xs + 0.15 * (j - 1),
      [c["mean"] for c in per],
      [c["std"] for c in per],
      fmt="o",
      ms=3,
      capsize=2,
      label=name,
    )
  ticks = xs[:: max(1, last["C"] // 10)]
  ax.set_xticks(ticks, [str(last["checkpoint_steps"][i]) for i in ticks])
  ax.set_xlabel("training step of w*")
  ax.set_ylabel("LLC (mean ± chain std)")
  ax.set_title(f"estimates at C={last['C']}")
  ax.legend()


def _methods(rows: list[dict]) -> list[str]:
  return [
    m
    for m in (
      "slt_jax",
      "slt_jax_counter_hash",
      "devinterp",
      "torch_loop",
      "blackjax",
    )
    if any(r.get(m) for r in rows)
  ]


def _settings_grid(ax, payload: dict) -> None:
  grid = payload["settings_grid"]
  one, separate = grid["one_call"], grid["separate_calls"]
  labels = ["1 call (grid)", f"{separate['calls']} calls"]
  xs = np.arange(2)
  for j, (key, label) in enumerate(
    (("steps_per_second", "with compile"), ("steady_steps_per_second", "warm"))
  ):
    ax.bar(xs + (j - 0.5) * 0.35, [one[key], separate[key]], 0.35, label=label)
  ax.set_xticks(
    xs,
    [
      f"{label}\n{row['program_compiles']} compile(s)"
      for label, row in zip(labels, (one, separate))
    ],
  )
  ax.set_ylabel("SGLD steps / s")
  ax.set_title(
    f"{separate['calls']} settings at C={grid['C']}: "
    f"{grid['wall_speedup']:.2f}x wall"
  )
  ax.legend()


def _training(ax, payload: dict) -> None:
  tr = payload["training"]
  labels = [f"slt_jax x{k}" for k in tr["slt_jax"]]
  vals = [v["steps_per_second"] for v in tr["slt_jax"].values()]
  if "torch_loop" in tr:
    labels.append("torch loop")
    vals.append(tr["torch_loop"]["steps_per_second"])
  ax.bar(labels, vals, color="tab:gray")
  ax.set_ylabel("training steps / s (all runs)")
  ax.set_title("training")


def _batch_width(ax, payload: dict) -> None:
  rows = payload["scaling"]["batch_width"]
  widths = [r["batched_chains"] for r in rows]
  ax.plot(widths, [r["steps_per_second"] for r in rows], "o-")
  ax.set_xscale("log")
  ax.set_xticks(widths, [str(w) for w in widths])
  ax.minorticks_off()
  ax.set_xlabel("chains batched in one program")
  ax.set_ylabel("SGLD steps / s")
  ax.set_title("batch width")


def _chunk_size(ax, payload: dict) -> None:
  by_chunk = sorted(payload["scaling"]["chunk_size"], key=lambda r: r["chunk"])
  chunks = [r["chunk"] for r in by_chunk]
  ax.plot(chunks, [r["seconds"] for r in by_chunk], "o-", color="C0")
  ax.set_xscale("log")
  ax.set_xticks(chunks, [str(c) for c in chunks])
  ax.minorticks_off()
  ax.set_xlabel(
    f"chunk size (points; {payload['config']['chunk_points']} points in all)"
  )
  ax.set_ylabel("seconds", color="C0")
  twin = ax.twinx()
  twin.plot(
    chunks,
    [r["memory"]["peak_bytes"] / 2**20 for r in by_chunk],
    "s--",
    color="C1",
  )
  twin.set_ylabel("XLA peak MiB per chunk", color="C1")
  ax.set_title("chunk size")


def _devices(ax, payload: dict) -> None:
  rows = payload["scaling"]["devices"]
  ax.plot(
    [r["devices"] for r in rows], [r["steps_per_second"] for r in rows], "o-"
  )
  ax.set_xticks([r["devices"] for r in rows])
  ax.set_xlabel("forced host devices")
  ax.set_ylabel("SGLD steps / s")
  ax.set_title("devices")


def _roofline(ax, payload: dict) -> None:
  st = payload["roofline"]["step"]
  parts = [
    ("matmul at model-shape peak", st["matmul_seconds_at_model_shape_peak"]),
    ("noise (in situ)", max(st["noise_seconds"], 0.0)),
    ("other", max(st["other_seconds"], 0.0)),
  ]
  bottom = 0.0
  for label, value in parts:
    ax.bar(["measured"], [1e3 * value], bottom=bottom, label=label)
    bottom += 1e3 * value
  ax.set_ylabel("ms per chain-step")
  ax.set_title(f"roofline: {100 * st['fraction_of_roofline']:.0f}% achieved")
  ax.legend(fontsize=8)


FIGURES: dict[str, list[tuple[str, list[Callable]]]] = {
  "llc_speed.png": [
    ("llc", [_llc_rates, _llc_estimates]),
    ("settings_grid", [_settings_grid]),
    ("training", [_training]),
  ],
  "scaling.png": [
    ("scaling", [_batch_width, _chunk_size, _devices]),
    ("roofline", [_roofline]),
  ],
}


def _row_of_panels(draws: list, path: str, panel_size: tuple) -> str:
  """Saves one row of panels, ``draw(ax)`` for each of ``draws``, at
  ``path``; returns ``path``."""
  width, height = panel_size
  fig, axes = plotting.plt.subplots(
    1,
    len(draws),
    figsize=(width * len(draws), height),
    layout="constrained",
    squeeze=False,
  )
  for ax, draw in zip(axes[0], draws):
    draw(ax)
  plotting.save_figure(fig, path)
  return path


def _time_to_accuracy(payload: dict, out_dir: str) -> list[str]:
  """``time_to_accuracy.png``: one panel per network run (none if the part
  did not run or was skipped)."""
  part = payload.get("time_to_accuracy") or {}
  networks = part.get("networks") or []
  if not networks:
    return []
  accuracy = part["config"]["accuracy"]
  draws = [
    functools.partial(
      time_to_accuracy.plot_network, record=r, accuracy=accuracy
    )
    for r in networks
  ]
  path = os.path.join(out_dir, "time_to_accuracy.png")
  return [_row_of_panels(draws, path, (6.0, 4.5))]


def plot(payload: dict, out_dir: str) -> list[str]:
  """Draws the figures of the parts present in ``payload``.

  Returns:
    The paths written (a figure with no part present is not drawn).
  """
  paths = _time_to_accuracy(payload, out_dir)
  for name, parts in FIGURES.items():
    panels = [
      lambda ax, draw=draw: draw(ax, payload)
      for part, draws in parts
      if payload.get(part)
      for draw in draws
    ]
    if panels:
      path = os.path.join(out_dir, name)
      paths.append(_row_of_panels(panels, path, (5.2, 4.2)))
  return paths


def device_report(payload: dict) -> str:
  """One compact JSON line with the headline numbers of the parts run."""
  report = {
    "backend": payload["environment"]["backend"],
    "devices": payload["environment"]["devices"],
  }
  rows = payload.get("llc")
  if rows:
    report["llc_steps_per_s"] = {
      str(r["C"]): round(r["slt_jax"]["steps_per_second"]) for r in rows
    }
    for name in ("devinterp", "torch_loop", "blackjax"):
      for prefix in ("", "counter_hash_"):
        report[f"{prefix}ratio_vs_{name}"] = {
          str(r["C"]): r.get(f"{prefix}ratio_vs_{name}") for r in rows
        }
  if payload.get("settings_grid"):
    grid = payload["settings_grid"]
    report["settings_grid"] = {
      "wall_s": [
        round(grid[k]["wall_seconds"], 1)
        for k in ("one_call", "separate_calls")
      ],
      "compiles": [
        grid[k]["program_compiles"] for k in ("one_call", "separate_calls")
      ],
      "steady_steps_per_s": [
        round(grid[k]["steady_steps_per_second"])
        for k in ("one_call", "separate_calls")
      ],
    }
  if payload.get("roofline"):
    report["roofline_fraction"] = payload["roofline"]["step"][
      "fraction_of_roofline"
    ]
    report["square_peak_gflops"] = payload["roofline"]["square_peak_gflops"]
  if payload.get("profile") and "skipped" not in payload["profile"]:
    report["profile_fraction"] = {
      noise: {c: round(f, 3) for c, f in prof["fraction"].items()}
      for noise, prof in payload["profile"].items()
    }
  if payload.get("scaling"):
    report["batch_width_steps_per_s"] = {
      str(r["batched_chains"]): round(r["steps_per_second"])
      for r in payload["scaling"]["batch_width"]
    }
  if payload.get("forms"):
    forms = payload["forms"]
    report["forms"] = {
      "default": forms["default"],
      "faster": forms["faster"],
      "gather_over_one_hot": {
        k: round(v, 2) for k, v in forms["gather_over_one_hot"].items()
      },
    }
  if payload.get("training"):
    report["train_steps_per_s"] = {
      k: round(v["steps_per_second"])
      for k, v in payload["training"]["slt_jax"].items()
    }
  if (payload.get("time_to_accuracy") or {}).get("networks"):
    report["time_to_accuracy_ratio"] = time_to_accuracy.device_line(
      payload["time_to_accuracy"]
    )
  report["load"] = payload["load_average"]
  return json.dumps(report, separators=(",", ":"), default=float)
