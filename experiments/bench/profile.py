"""Part 4: where a chain-step's time goes, op by op, from XLA's own profile.

One CPU chunk of the reference sweep runs under ``jax.profiler`` (a Perfetto
trace). The time of every executed XLA op is summed per op and classified
from the compiled HLO (``Sweep.compiled_text``): ``matmul`` (dots and dot
fusions), ``noise and update`` (fusions that hash bits, threefry's rounds
or ``counter_hash``'s, which XLA fuses with the SGLD update, and the other
ops of ``jax.random.normal``), ``permutation`` (the epoch sort) and
``other`` (the remaining elementwise work and reductions). Control-flow
ops (while, conditional, call) contain the others and are not counted.
CPU only: accelerator traces name kernels, not ops.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import gzip
import json
import os
import re
import tempfile

import jax

from experiments.bench import workload
from slt_jax import llc

CATEGORIES = ("matmul", "noise and update", "permutation", "other")
_CONTAINERS = ("while", "conditional", "call")
# ``%name = type opcode(``, the type a shape or a flat tuple of shapes.
_INSTRUCTION = re.compile(
  r"^\s*(?:ROOT )?%(\S+) = (?:\([^()]*\)|\S+) ([a-z\-]+)\("
)
_COMMENT = re.compile(r"/\*.*?\*/")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%(\S+) ")


def classify(hlo_text: str) -> dict[str, str]:
  """``{op name: category or "container"}`` for every instruction of
  ``hlo_text`` (optimized HLO).

  >>> text = '''%fused (p: f32[2]) -> f32[2] {
  ...   %p = f32[2]{0} parameter(0)
  ...   ROOT %s = u32[2]{0} shift-right-logical(%p, %p)
  ... }
  ... ENTRY %main (a: f32[2,2]) -> f32[2,2] {
  ...   %a = f32[2,2]{1,0} parameter(0)
  ...   %dot.1 = f32[2,2]{1,0} dot(%a, %a), lhs_contracting_dims={1}
  ...   %f.2 = f32[2]{0} fusion(%a), kind=kLoop, calls=%fused
  ...   %s.4 = (f32[2]{0}, /*index=1*/s32[2]{0}) sort(%a, %a), dimensions={0}
  ...   ROOT %w.3 = f32[2,2]{1,0} while(%a), body=%fused
  ... }'''
  >>> kinds = classify(text)
  >>> [kinds[k] for k in ("dot.1", "f.2", "s.4", "w.3", "a")]
  ['matmul', 'noise and update', 'permutation', 'container', 'other']
  """
  bodies, current = {}, None
  for line in hlo_text.splitlines():
    head = _COMPUTATION.match(line)
    if head and line.rstrip().endswith("{"):
      current = head.group(1)
      bodies[current] = []
    elif current is not None:
      bodies[current].append(line)
  categories = {}
  for lines in bodies.values():
    for line in lines:
      match = _INSTRUCTION.match(_COMMENT.sub("", line))
      if not match:
        continue
      name, opcode = match.groups()
      called = re.search(r"calls=%([\w.\-]+)", line)
      body = "\n".join(bodies.get(called.group(1), [])) if called else ""
      if opcode in _CONTAINERS:
        categories[name] = "container"
      elif opcode == "dot" or " dot(" in body or "__ynn_fusion" in line:
        categories[name] = "matmul"
      elif "shift-right-logical" in body or "jit(_normal)" in line:
        categories[name] = "noise and update"
      elif opcode == "sort" or " sort(" in body:
        categories[name] = "permutation"
      else:
        categories[name] = "other"
  return categories


def _trace_seconds(run, log_dir: str) -> dict[str, float]:
  """Seconds per op name of ``run()`` under the profiler."""
  with jax.profiler.trace(log_dir, create_perfetto_trace=True):
    run()
  (path,) = glob.glob(
    os.path.join(log_dir, "**", "perfetto_trace.json.gz"), recursive=True
  )
  with gzip.open(path, "rt") as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  seconds = collections.Counter()
  for event in events:
    if event.get("ph") == "X":
      seconds[event["name"]] += event["dur"] * 1e-6
  return seconds


def profile(
  cfg: workload.BenchConfig, engine: workload.Engine, ref: dict, key
) -> dict:
  """Per-category and top-op seconds per chain-step, for the configured
  noise and ``counter_hash`` (one CPU chunk, short chains)."""
  if jax.devices()[0].platform != "cpu":
    return {"skipped": "op profiles are read on CPU only"}
  params = workload.points(
    ref, max(1, llc.CPU_CHAINS_PER_CHUNK // cfg.sgld.num_chains)
  )
  out = {}
  for noise in dict.fromkeys((cfg.sgld.noise, "counter_hash")):
    sgld_cfg = dataclasses.replace(workload.short(cfg), noise=noise)
    sweep = engine.sweep(sgld_cfg, params)
    run = lambda sweep=sweep: sweep.run(
      key, params, 1, progress=False, warn=False
    )
    run()  # compiles and warms up.
    categories = classify(sweep.compiled_text())
    with tempfile.TemporaryDirectory() as tmp:
      seconds = _trace_seconds(run, tmp)
    chain_steps = (
      workload.num_points(params)
      * sgld_cfg.num_chains
      * workload.steps_per_chain(sgld_cfg)
    )
    ops = {
      name: s / chain_steps
      for name, s in seconds.items()
      if categories.get(name, "container") != "container"
    }
    total = sum(ops.values())
    by_category = {c: 0.0 for c in CATEGORIES}
    for name, s in ops.items():
      by_category[categories[name]] += s
    top = sorted(ops, key=ops.get, reverse=True)[:8]
    out[noise] = {
      "op_seconds_per_chain_step": total,
      "seconds_per_chain_step": by_category,
      "fraction": {c: s / total for c, s in by_category.items()},
      "top_ops": [
        {
          "op": name,
          "category": categories[name],
          "seconds_per_chain_step": ops[name],
          "fraction": ops[name] / total,
        }
        for name in top
      ],
    }
    split = ", ".join(
      f"{c} {100 * f:.0f}%" for c, f in out[noise]["fraction"].items()
    )
    print(f"profile ({noise}): {1e3 * total:.2f} ms of ops per step: {split}")
  return out
