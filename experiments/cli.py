"""The command line of every experiment: flags, modes, the output folder and
the compute-then-plot runner.

Every experiment is ``python -m experiments.NAME [--quick] [--out DIR]
[--seed N] ...`` and writes ``figures/NAME/`` (or ``DIR``) with a
``results.json`` of its config and numbers next to its figures;
``--replot`` redraws the figures from that file alone.
"""

from __future__ import annotations

import argparse
import os
from typing import Callable, Optional, Sequence

from experiments import results, store
from slt_jax import distributed, persist

FIGURES_DIR = "figures"


def parse_args(
  description: str,
  extra: Optional[Callable[[argparse.ArgumentParser], None]] = None,
  argv: Optional[Sequence[str]] = None,
) -> argparse.Namespace:
  """Parses the common flags plus an experiment's own.

  Args:
    description: help text (usually the module docstring).
    extra: called with the parser to add the experiment's flags.
    argv: arguments (default: ``sys.argv[1:]``).

  With ``--coordinator HOST:PORT --num-processes N --process-id I`` the
  process first joins an N-process JAX runtime (``slt_jax.distributed``):
  start the same command on every host, each with its own id; sweeps and
  training then use every process's devices, and process 0 writes the
  results, figures and run store.

  Returns:
    Namespace with ``quick`` (bool), ``out`` (str or None), ``seed`` (int)
    and the extra flags.
  """
  parser = argparse.ArgumentParser(
    description=description,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument(
    "--quick",
    action="store_true",
    help="small configuration that finishes in minutes",
  )
  parser.add_argument(
    "--out", default=None, help="output folder (default figures/NAME/)"
  )
  parser.add_argument(
    "--seed", type=int, default=0, help="root PRNG seed (default 0)"
  )
  parser.add_argument(
    "--replot",
    action="store_true",
    help="redraw the figures from DIR/results.json alone "
    "(no computation), where the experiment supports it",
  )
  parser.add_argument(
    "--coordinator",
    default=None,
    metavar="HOST:PORT",
    help="join a multi-process run coordinated by process 0 "
    "at HOST:PORT (with --num-processes, --process-id)",
  )
  parser.add_argument("--num-processes", type=int, default=1)
  parser.add_argument("--process-id", type=int, default=0)
  if extra is not None:
    extra(parser)
  args = parser.parse_args(argv)
  if args.coordinator:
    distributed.initialize(
      args.coordinator, args.num_processes, args.process_id
    )
  elif args.num_processes != 1:
    parser.error("--num-processes needs --coordinator")
  return args


def parse_mode(
  description: str,
  extra: Optional[Callable[[argparse.ArgumentParser], None]] = None,
  argv: Optional[Sequence[str]] = None,
) -> tuple[argparse.Namespace, str]:
  """``parse_args`` plus ``--paper`` and a hidden ``--smoke`` (for tests).

  Returns:
    (namespace, mode) with mode ``smoke``, ``quick``, ``paper`` or
    ``default``.
  """

  def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
      "--paper",
      action="store_true",
      help="paper-sized configuration (sized for a GPU)",
    )
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    if extra is not None:
      extra(parser)

  args = parse_args(description, add, argv)
  mode = (
    "smoke"
    if args.smoke
    else "quick"
    if args.quick
    else "paper"
    if args.paper
    else "default"
  )
  return args, mode


def compute_then_plot(
  name: str,
  args: argparse.Namespace,
  compute: Callable[[], dict],
  plot: Callable[[dict, str], None],
) -> dict:
  """Runs ``compute`` (its dict goes to ``results.json``), then ``plot``.

  With ``args.replot`` nothing is computed: the figures are redrawn from the
  ``results.json`` already in the output folder.

  Args:
    name: experiment name (default output folder ``figures/NAME/``).
    args: parsed flags (``out``, ``replot``).
    compute: returns the JSON-able results.
    plot: ``plot(results, out_dir)`` draws every figure from ``results``.

  Returns:
    The results (as read back from ``results.json``).
  """
  out_dir = output_dir(name, args.out)
  path = os.path.join(out_dir, "results.json")
  if args.replot:
    if not os.path.exists(path):
      raise ValueError(f"--replot needs {path}: run the experiment first")
  else:
    payload = compute()
    if not distributed.is_writer():  # Process 0 writes and plots.
      return payload
    results.write_results(out_dir, payload)
  payload = persist.load_json(path)
  plot(payload, out_dir)
  return payload


def run_stored_experiment(
  name: str,
  doc: str,
  configs: dict,
  compute: Callable,
  plot: Callable[[dict, str], None],
  argv: Optional[Sequence[str]] = None,
) -> dict:
  """The ``main`` of an experiment that trains through the run store.

  Parses the mode and ``--runs`` (``store.add_runs_flag``), then
  ``compute_then_plot`` with ``compute(configs[mode], seed, out_dir, runs)``
  (``runs`` the store folder; ``"mode"`` added).

  Raises:
    SystemExit: if ``configs`` has no instance for the mode.
  """
  args, mode = parse_mode(doc, store.add_runs_flag, argv)
  if mode not in configs:
    raise SystemExit(
      f"{name} has no --{mode} mode: choose one of {sorted(configs)}"
    )
  out_dir = output_dir(name, args.out)
  return compute_then_plot(
    name,
    args,
    lambda: {
      "mode": mode,
      **compute(configs[mode], args.seed, out_dir, args.runs),
    },
    plot,
  )


def output_dir(name: str, out: Optional[str] = None) -> str:
  """Creates and returns the output folder: ``out`` or ``figures/NAME/``.

  >>> import tempfile
  >>> out = os.path.join(tempfile.mkdtemp(), "fig")
  >>> output_dir("exp", out) == out and os.path.isdir(out)
  True
  """
  path = out if out else os.path.join(FIGURES_DIR, name)
  os.makedirs(path, exist_ok=True)
  return path
