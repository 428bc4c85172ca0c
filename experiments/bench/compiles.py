"""Compile count and wall time of experiment commands (engine before/after).

Runs each command with ``JAX_LOG_COMPILES=1`` and counts XLA compilations per
jitted function from the log (the LLC program is ``jit(point)``), or reads
logs such runs left (``--logs``), and writes the counts, compile seconds,
wall time and the load average to a JSON file.

    python -m experiments.bench.compiles --out figures/bench/compiles.json \\
        --label after -- python -m experiments.robustness --quick
    python -m experiments.bench.compiles --out F --label before \\
        --logs robustness=/tmp/before.robustness.log
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import time

from slt_jax import persist

_LINE = re.compile(r"Finished XLA compilation of (\S+) in ([0-9.eE+-]+) sec")


def count_compiles(text: str) -> dict:
  """Per-function compile counts and seconds in a ``JAX_LOG_COMPILES`` log.

  Example:
    >>> counts = count_compiles("Finished XLA compilation of jit(point) in 2.5 sec")
    >>> counts["total"], counts["seconds"], counts["by_function"]
    (1, 2.5, {'jit(point)': 1})
    >>> counts["llc_program"], counts["llc_program_seconds"]
    (1, 2.5)
  """
  counts, seconds = collections.Counter(), collections.Counter()
  for name, sec in _LINE.findall(text):
    counts[name] += 1
    seconds[name] += float(sec)
  return {
    "total": sum(counts.values()),
    "seconds": sum(seconds.values()),
    "by_function": dict(counts.most_common()),
    "llc_program": counts["jit(point)"],
    "llc_program_seconds": seconds["jit(point)"],
  }


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--out", required=True, help="JSON file to update")
  parser.add_argument("--label", required=True, help="e.g. before / after")
  parser.add_argument(
    "--logs",
    nargs="*",
    default=None,
    metavar="NAME=LOG[@WALL]",
    help="read existing logs instead of running a command "
    "(WALL: the run's wall seconds, timed by its runner)",
  )
  parser.add_argument(
    "--note",
    default=None,
    help="free text stored with the label (e.g. the load)",
  )
  parser.add_argument("command", nargs="*", help="the command to run")
  args = parser.parse_args(argv)
  results = persist.load_json(args.out) if os.path.exists(args.out) else {}
  entries = results.setdefault(args.label, {})
  if args.note:
    entries["note"] = args.note
  if args.logs:
    for item in args.logs:
      name, path = item.split("=", 1)
      path, _, wall = path.partition("@")
      with open(path) as f:
        entries[name] = {
          "log": path,
          "wall_seconds": float(wall) if wall else None,
          **count_compiles(f.read()),
        }
  else:
    if not args.command:
      raise SystemExit("give a command after --, or --logs")
    start = time.perf_counter()
    proc = subprocess.run(
      args.command,
      env={**os.environ, "JAX_LOG_COMPILES": "1"},
      capture_output=True,
      text=True,
    )
    entries[" ".join(args.command)] = {
      "returncode": proc.returncode,
      "wall_seconds": time.perf_counter() - start,
      "load_average_after": os.getloadavg(),
      **count_compiles(proc.stdout + proc.stderr),
    }
    sys.stderr.write(proc.stderr[-2000:])
  persist.save_json(args.out, results)
  return results


if __name__ == "__main__":
  main()
