"""Experiments under test keep their trained runs in a temporary store."""

import pytest

from experiments import store


@pytest.fixture(autouse=True)
def _private_run_store(tmp_path, monkeypatch):
  """Points ``experiments.store.RUNS_DIR`` at a temporary folder."""
  monkeypatch.setattr(store, "RUNS_DIR", str(tmp_path / "runs"))
