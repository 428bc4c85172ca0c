"""Experiments under test keep their trained runs in a temporary store."""

import pathlib

import pytest

from experiments import store


@pytest.fixture(autouse=True)
def _private_run_store(tmp_path, monkeypatch):
  """Points ``experiments.store.RUNS_DIR`` at a temporary folder."""
  monkeypatch.setattr(store, "RUNS_DIR", str(tmp_path / "runs"))


def pytest_collection_modifyitems(config, items):
  """Every experiment test runs experiments end to end: the slow tier."""
  del config
  here = pathlib.Path(__file__).parent
  for item in items:
    if here in item.path.parents:
      item.add_marker(pytest.mark.slow)
