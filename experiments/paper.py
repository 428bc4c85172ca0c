"""``make paper``: every figure at paper size, under both protocols where they
differ, into ``figures/paper/NAME/``, then ``figures/paper/README.md``.

Each figure runs as its own ``python -m experiments.NAME --paper ...`` process
(resumable: trained runs come from the run store, LLC chunks from the
figure's folder), its wall time goes to ``figures/paper/timings.json``, and
the README table (figure, command, protocol, wall time, our number, the
paper's, match) is written from the figures' ``results.json`` files alone.

    python -m experiments.paper                  # all figures, then the README
    python -m experiments.paper --only llc_vs_p  # some figures
    python -m experiments.paper --readme         # only rewrite the README
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from experiments import paper_figures, paper_report
from slt_jax import persist

PAPER_DIR = os.path.join("figures", "paper")


def command(name: str, flags) -> list[str]:
  """The command line that runs figure ``name`` at paper size."""
  return [
    sys.executable,
    "-m",
    f"experiments.{name}",
    "--paper",
    *flags,
    "--out",
    os.path.join(PAPER_DIR, name),
  ]


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    "--only", nargs="*", default=None, help="figure names to run (default: all)"
  )
  parser.add_argument(
    "--readme", action="store_true", help="only rewrite figures/paper/README.md"
  )
  args = parser.parse_args(argv)
  names = [n for n, _ in paper_figures.FIGURES]
  unknown = set(args.only or ()) - set(names)
  if unknown:
    raise SystemExit(
      f"--only: unknown figures {sorted(unknown)}; known: {names}"
    )
  timings_path = os.path.join(PAPER_DIR, "timings.json")
  if not args.readme:
    for name, flags in paper_figures.FIGURES:
      if args.only is not None and name not in args.only:
        continue
      cmd = command(name, flags)
      print("$", " ".join(cmd[1:]), flush=True)
      start = time.perf_counter()
      proc = subprocess.run(cmd)
      seconds = time.perf_counter() - start
      timings = (
        persist.load_json(timings_path) if os.path.exists(timings_path) else {}
      )
      timings[name] = {
        "command": " ".join(["python"] + cmd[1:]),
        "seconds": seconds,
        "returncode": proc.returncode,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
      }
      persist.save_json(timings_path, timings)
      if proc.returncode:
        print(f"{name} failed (exit {proc.returncode}); continuing", flush=True)
  paper_report.write_readme(PAPER_DIR)


if __name__ == "__main__":
  main()
