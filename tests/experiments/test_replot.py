"""Every committed ``figures/NAME/results.json`` redraws with ``--replot``."""

import importlib
import importlib.util
import os
import shutil

import pytest

FIGURES = os.path.join(
  os.path.dirname(__file__), os.pardir, os.pardir, "figures"
)
EXPERIMENTS = sorted(
  name
  for name in os.listdir(FIGURES)
  if os.path.exists(os.path.join(FIGURES, name, "results.json"))
  and importlib.util.find_spec(f"experiments.{name}") is not None
)
# Quick results still in an old layout: rerun ``python -m
# experiments.NAME --quick`` and remove the name (strict: a result that
# redraws again fails here until it is removed).
STALE: set[str] = set()


def test_every_experiment_with_results_is_listed():
  assert {"llc_over_training", "llc_vs_p", "regimes"} <= set(EXPERIMENTS)


@pytest.mark.parametrize(
  "name",
  [
    pytest.param(
      name,
      marks=pytest.mark.xfail(name in STALE, strict=True, reason="stale"),
    )
    for name in EXPERIMENTS
  ],
)
def test_committed_results_redraw(name, tmp_path):
  out = tmp_path / name
  shutil.copytree(os.path.join(FIGURES, name), out)
  pngs = sorted(p for p in os.listdir(out) if p.endswith(".png"))
  for png in pngs:
    os.remove(out / png)
  main_module = "bench.__main__" if name == "bench" else name
  module = importlib.import_module(f"experiments.{main_module}")
  module.main(["--replot", "--out", str(out)])
  assert sorted(p for p in os.listdir(out) if p.endswith(".png")) == pngs
