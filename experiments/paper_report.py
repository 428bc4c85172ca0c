"""``figures/paper/README.md``: one table of every paper-size number.

Each figure module that runs in ``make paper`` has ``paper_rows(results) ->
list[dict]`` turning its ``results.json`` into rows ``{quantity, protocol,
ours, paper, match}``; this module adds the command and the measured wall
time (``figures/paper/timings.json``) and writes the table. Nothing here
computes a number: it only reads what the experiments wrote.
"""

from __future__ import annotations

import importlib
import os
import platform

from experiments import paper_figures, results
from slt_jax import persist


def _fmt(value) -> str:
  if value is None:
    return "—"
  if isinstance(value, bool):
    return "yes" if value else "**no**"
  if isinstance(value, float):
    return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
  return str(value)


def cpu_model() -> str:
  """The CPU model name and widest AVX (``results.cpu_info``)."""
  cpu = results.cpu_info()
  simd = cpu["simd_flags"]
  vector = (
    "AVX-512" if "avx512f" in simd else "AVX2" if "avx2" in simd else "no AVX2"
  )
  return f"{cpu['model'] or platform.machine()}, {vector}"


def write_readme(paper_dir: str) -> str:
  """Writes ``paper_dir/README.md`` from the figures' results; returns it."""
  timings_path = os.path.join(paper_dir, "timings.json")
  timings = (
    persist.load_json(timings_path) if os.path.exists(timings_path) else {}
  )
  lines = [
    "# The paper at paper size",
    "",
    "Written by `python -m experiments.paper` (`make paper`) from each "
    "figure's `results.json`; every number below is in those files. "
    f"Machine: {os.cpu_count()} CPU cores, {cpu_model()}.",
    "",
    "| figure | command | wall time | protocol | quantity | ours | "
    "paper | match |",
    "|---|---|---|---|---|---|---|---|",
  ]
  total = 0.0
  for name, flags in paper_figures.FIGURES:
    path = os.path.join(paper_dir, name, "results.json")
    timing = timings.get(name, {})
    seconds = timing.get("seconds")
    total += seconds or 0.0
    wall = f"{seconds / 60:.1f} min" if seconds else "—"
    cmd = (
      "`"
      + " ".join(["python -m", f"experiments.{name}", "--paper", *flags])
      + "`"
    )
    if not os.path.exists(path):
      lines.append(f"| {name} | {cmd} | {wall} | | not run yet | | | |")
      continue
    module = importlib.import_module(f"experiments.{name}")
    rows = module.paper_rows(persist.load_json(path))
    for i, row in enumerate(rows):
      lines.append(
        "| "
        + " | ".join(
          [
            name if i == 0 else "",
            cmd if i == 0 else "",
            wall if i == 0 else "",
            row.get("protocol", ""),
            row["quantity"],
            _fmt(row.get("ours")),
            _fmt(row.get("paper")),
            _fmt(row.get("match")),
          ]
        )
        + " |"
      )
  lines += [
    "",
    f"Total wall time of the figures above: {total / 60:.1f} "
    "minutes (each figure's last complete run; see timings.json).",
  ]
  notes = [
    f"- {name}: {t['note']}" for name, t in timings.items() if t.get("note")
  ]
  if notes:
    lines += ["", "Notes on the timings:", ""] + notes
  readme = os.path.join(paper_dir, "README.md")
  persist.atomic_write(
    readme, lambda f: f.write("\n".join(lines).encode() + b"\n")
  )
  return readme
