"""Tests for the run store (slt_jax.grokking.runs, experiments.store)."""

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil

import chex
import jax
import numpy as np
import pytest

from experiments import store as experiment_store
from slt_jax import persist
from slt_jax.grokking import data, runs, train
from slt_jax.grokking.config import DataConfig, ModelConfig, TrainConfig

P, K = 7, 16
DATA_CFG = DataConfig(p=P, num_train=30)
MODEL_CFG = ModelConfig(p=P, width=K)
CFG = TrainConfig(
  lr=1e-2,
  batch_size=8,
  num_steps=40,
  log_every=10,
  ckpt_every=10,
  chunk_steps=20,
)
# One alternative value per TrainConfig field (all valid with the others).
TRAIN_VARIANTS = {
  "loss": "mse",
  "optimizer": "sgd",
  "lr": 2e-2,
  "weight_decay": 0.0,
  "momentum": 0.5,
  "batch_size": 4,
  "num_steps": 80,
  "log_every": 5,
  "ckpt_every": 20,
  "chunk_steps": 40,
  "stop_acc": 0.9,
  "stop_patience": 5,
  "stop_check_every": 20,
}


@pytest.fixture(scope="module")
def data_key() -> jax.Array:
  return jax.random.key(10)


@pytest.fixture(scope="module")
def tiny_data(data_key) -> data.ModularData:
  return data.modular_arithmetic(data_key, DATA_CFG)


@pytest.fixture(scope="module")
def trained(tiny_data) -> train.TrainResult:
  return train.train(
    jax.random.key(0), tiny_data, MODEL_CFG, CFG, seeds=2, progress=False
  )


@pytest.fixture
def store(tmp_path) -> str:
  return str(tmp_path / "runs")


def _spec(tiny_data, **kwargs):
  return runs.run_spec(
    jax.random.key(0), tiny_data, MODEL_CFG, CFG, seeds=2, **kwargs
  )


def _assert_results_equal(a: train.TrainResult, b: train.TrainResult):
  """Every field equal, timing and dtypes included."""
  assert a._fields == b._fields
  for name in a._fields:
    x, y = getattr(a, name), getattr(b, name)
    if name == "steps_per_second":
      np.testing.assert_equal(x, y)
    else:
      chex.assert_trees_all_equal(x, y, strict=True)
      chex.assert_trees_all_equal_dtypes(x, y)


def test_fingerprint_changes_with_every_field(tiny_data, monkeypatch):
  assert set(TRAIN_VARIANTS) == {
    f.name for f in dataclasses.fields(TrainConfig)
  }
  base = _spec(tiny_data)
  key = jax.random.key(0)
  other_split = data.modular_arithmetic(jax.random.key(11), DATA_CFG)
  variants = {
    "key": runs.run_spec(jax.random.key(1), tiny_data, MODEL_CFG, CFG, seeds=2),
    "data key": runs.run_spec(key, other_split, MODEL_CFG, CFG, seeds=2),
    "data num_train": runs.run_spec(
      key,
      data.modular_arithmetic(
        jax.random.key(10), DataConfig(p=P, num_train=31)
      ),
      MODEL_CFG,
      CFG,
      seeds=2,
    ),
    "data op": runs.run_spec(
      key,
      data.modular_arithmetic(
        jax.random.key(10), DataConfig(p=P, op="*", num_train=30)
      ),
      MODEL_CFG,
      CFG,
      seeds=2,
    ),
    "width": runs.run_spec(
      key, tiny_data, ModelConfig(p=P, width=K + 1), CFG, seeds=2
    ),
    "init": runs.run_spec(
      key,
      tiny_data,
      dataclasses.replace(MODEL_CFG, init="lecun_normal"),
      CFG,
      seeds=2,
    ),
    "init_scale": runs.run_spec(
      key,
      tiny_data,
      dataclasses.replace(MODEL_CFG, init_scale=0.5),
      CFG,
      seeds=2,
    ),
    "seeds": _spec(tiny_data, seed_ids=[0, 2]),
    "lrs": _spec(tiny_data, lrs=[1e-2, 1e-3]),
    "weight_decays": _spec(tiny_data, weight_decays=[1e-4]),
    "num_trains": _spec(tiny_data, num_trains=[20]),
  }
  for name, value in TRAIN_VARIANTS.items():
    cfg = dataclasses.replace(CFG, **{name: value})
    variants[f"train {name}"] = runs.run_spec(
      key, tiny_data, MODEL_CFG, cfg, seeds=2
    )
  monkeypatch.setattr(runs, "FORMAT_VERSION", runs.FORMAT_VERSION + 1)
  variants["format"] = _spec(tiny_data)
  prints = {name: persist.fingerprint(spec) for name, spec in variants.items()}
  prints["base"] = persist.fingerprint(base)
  assert len(set(prints.values())) == len(prints), prints
  # Defaults resolve: an explicit grid equal to the default is the same run.
  monkeypatch.undo()
  assert (
    persist.fingerprint(_spec(tiny_data, lrs=[CFG.lr], seed_ids=[0, 1]))
    == (prints["base"])
  )
  # A spec is plain JSON.
  assert json.loads(json.dumps(base)) == base


def test_fingerprint_is_the_stores_hash(tiny_data):
  # Stored runs are named by the SHA-256 of the spec's canonical JSON: the
  # hash must stay that, or existing stores would no longer be found.
  spec = _spec(tiny_data, lrs=[1e-2, 3e-3], num_trains=[20, 30])
  text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
  assert persist.fingerprint(spec) == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"lrs": []}, "lrs=[] is invalid"),
    ({"seeds": 2.5}, "seeds=2.5 is invalid: must be an integer >= 1"),
    ({"weight_decays": [float("nan")]}, "weight_decay=nan is invalid"),
  ],
)
def test_run_spec_refuses_what_train_refuses(tiny_data, kwargs, match):
  with pytest.raises(ValueError, match=re.escape(match)):
    runs.run_spec(jax.random.key(0), tiny_data, MODEL_CFG, CFG, **kwargs)


def test_run_name_is_label_and_fingerprint(tiny_data):
  spec = _spec(tiny_data)
  name = runs.run_name("fig 3/p=7", spec)
  assert name == "fig_3_p_7-" + persist.fingerprint(spec)[:12]


@pytest.mark.slow
def test_save_load_roundtrip(tiny_data, trained, store):
  spec = _spec(tiny_data)
  path = runs.save_run(
    store, "tiny", spec, trained, provenance={"note": "test"}
  )
  assert sorted(os.listdir(store)) == [os.path.basename(path)]  # No temp dir.
  loaded = runs.load_run(store, "tiny", spec)
  _assert_results_equal(loaded, trained)
  chex.assert_shape(loaded.checkpoints["W"], (2, 4, K, 2 * P))
  chex.assert_shape(loaded.stop_step, (2,))
  manifest = json.load(open(os.path.join(path, runs.MANIFEST)))
  assert manifest["fingerprint"] == persist.fingerprint(spec)
  assert manifest["format_version"] == runs.FORMAT_VERSION
  assert manifest["spec"] == spec
  assert manifest["provenance"] == {"note": "test"}
  assert manifest["shapes"]["checkpoints/1"] == [2, 4, K, 2 * P]  # W.
  assert "created" in manifest
  with pytest.raises(FileExistsError, match="already exists"):
    runs.save_run(store, "tiny", spec, trained)
  with pytest.raises(FileNotFoundError, match="no stored run"):
    runs.load_run(store, "other", spec)


def _corrupt_copy(store, spec, how):
  path = runs.run_dir(store, "tiny", spec)
  if how == "manifest garbage":
    with open(os.path.join(path, runs.MANIFEST), "w") as f:
      f.write("{not json")
    return runs.MANIFEST
  if how == "manifest fingerprint":
    manifest_path = os.path.join(path, runs.MANIFEST)
    manifest = json.load(open(manifest_path))
    manifest["fingerprint"] = "0" * 64
    json.dump(manifest, open(manifest_path, "w"))
    return runs.MANIFEST
  if how == "manifest missing":
    os.remove(os.path.join(path, runs.MANIFEST))
    return runs.MANIFEST
  npz = os.path.join(path, runs.ARRAYS)
  if how == "npz truncated":
    with open(npz, "r+b") as f:
      f.truncate(os.path.getsize(npz) // 2)
  elif how == "npz missing":
    os.remove(npz)
  return runs.ARRAYS


@pytest.mark.parametrize(
  "how",
  [
    "manifest garbage",
    "manifest fingerprint",
    "manifest missing",
    "npz truncated",
    "npz missing",
  ],
)
def test_corrupt_entry_raises_naming_file(
  tiny_data, trained, store, how, monkeypatch
):
  spec = _spec(tiny_data)
  runs.save_run(store, "tiny", spec, trained)
  name = _corrupt_copy(store, spec, how)
  path = os.path.join(runs.run_dir(store, "tiny", spec), name)
  with pytest.raises(ValueError, match=f"{path}.*delete that directory"):
    runs.load_run(store, "tiny", spec)
  # get_or_train neither loads it nor retrains over it.
  monkeypatch.setattr(train, "train", _no_training)
  with pytest.raises(ValueError, match=path):
    runs.get_or_train(
      store,
      "tiny",
      jax.random.key(0),
      tiny_data,
      MODEL_CFG,
      CFG,
      seeds=2,
      progress=False,
    )


def _no_training(*args, **kwargs):
  raise AssertionError("train.train was called")


def test_trained_run_warm_store_trains_nothing(
  tiny_data, trained, store, monkeypatch
):
  first = experiment_store.trained_run(
    jax.random.key(0),
    tiny_data,
    MODEL_CFG,
    CFG,
    seeds=2,
    store=store,
    label="tiny",
    progress=False,
  )
  _assert_results_equal(
    first._replace(steps_per_second=trained.steps_per_second), trained
  )
  assert os.listdir(store) == [runs.run_name("tiny", _spec(tiny_data))]
  monkeypatch.setattr(train, "train", _no_training)
  again = experiment_store.trained_run(
    jax.random.key(0),
    tiny_data,
    MODEL_CFG,
    CFG,
    seeds=2,
    store=store,
    label="tiny",
    progress=False,
  )
  _assert_results_equal(again, first)


@pytest.mark.slow
def test_trained_run_from_data_config(data_key, tiny_data, store, monkeypatch):
  from_data = experiment_store.trained_run(
    jax.random.key(0), tiny_data, MODEL_CFG, CFG, store=store, progress=False
  )
  monkeypatch.setattr(train, "train", _no_training)
  # The same split given as (DataConfig, key) is the same run.
  from_cfg = experiment_store.trained_run(
    jax.random.key(0),
    DATA_CFG,
    MODEL_CFG,
    CFG,
    data_key=data_key,
    store=store,
    progress=False,
  )
  _assert_results_equal(from_cfg, from_data)
  assert os.listdir(store)[0].startswith(f"p{P}_K{K}-")
  with pytest.raises(ValueError, match="data_key"):
    experiment_store.trained_run(
      jax.random.key(0), DATA_CFG, MODEL_CFG, CFG, store=store, progress=False
    )


def test_interrupted_training_resumes(tiny_data, trained, store, monkeypatch):
  spec = _spec(tiny_data)
  partial = runs.run_dir(store, "tiny", spec) + runs.PARTIAL_SUFFIX
  cut = experiment_store.trained_run(
    jax.random.key(0),
    tiny_data,
    MODEL_CFG,
    CFG,
    seeds=2,
    store=store,
    label="tiny",
    max_chunks=1,
    progress=False,
  )
  chex.assert_shape(cut.checkpoints["W"], (2, 2, K, 2 * P))
  assert not runs.is_complete(cut, CFG)
  assert os.listdir(store) == [os.path.basename(partial)]  # Not published.
  calls = []
  inner = train.train

  def counting_train(*args, **kwargs):
    calls.append(kwargs.get("out_dir"))
    return inner(*args, **kwargs)

  monkeypatch.setattr(train, "train", counting_train)
  done = experiment_store.trained_run(
    jax.random.key(0),
    tiny_data,
    MODEL_CFG,
    CFG,
    seeds=2,
    store=store,
    label="tiny",
    progress=False,
  )
  assert calls == [partial]
  assert runs.is_complete(done, CFG)
  _assert_results_equal(
    done._replace(steps_per_second=0.0), trained._replace(steps_per_second=0.0)
  )
  assert os.listdir(store) == [runs.run_name("tiny", spec)]  # Published.
  _assert_results_equal(runs.load_run(store, "tiny", spec), done)


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_early_stopped_run_roundtrip(tiny_data, store):
  cfg = dataclasses.replace(CFG, stop_acc=0.05, stop_patience=1)
  result = runs.get_or_train(
    store,
    "stop",
    jax.random.key(0),
    tiny_data,
    MODEL_CFG,
    cfg,
    seeds=2,
    progress=False,
  )
  assert np.all(result.stop_step >= 0) and runs.is_complete(result, cfg)
  spec = runs.run_spec(jax.random.key(0), tiny_data, MODEL_CFG, cfg, seeds=2)
  _assert_results_equal(runs.load_run(store, "stop", spec), result)
  chex.assert_trees_all_equal(
    runs.load_run(store, "stop", spec).stop_params, result.stop_params
  )


def test_add_runs_flag():
  parser = argparse.ArgumentParser()
  experiment_store.add_runs_flag(parser)
  assert parser.parse_args([]).runs == experiment_store.RUNS_DIR
  assert os.path.basename(experiment_store.RUNS_DIR) == "runs"
  assert parser.parse_args(["--runs", "elsewhere"]).runs == "elsewhere"


def test_dtype_differing_from_manifest_raises(tiny_data, trained, store):
  spec = _spec(tiny_data)
  path = runs.save_run(store, "tiny", spec, trained)
  # Rewrite one array as float64 and update the checksum, so that only the
  # dtype differs from the manifest.
  npz, manifest_path = (
    os.path.join(path, n) for n in (runs.ARRAYS, runs.MANIFEST)
  )
  arrays = persist.load_npz(npz)
  assert arrays["final_params/0"].dtype == np.float32
  arrays["final_params/0"] = arrays["final_params/0"].astype(np.float64)
  persist.save_npz(npz, arrays)
  manifest = json.load(open(manifest_path))
  manifest["arrays_sha256"] = hashlib.sha256(open(npz, "rb").read()).hexdigest()
  json.dump(manifest, open(manifest_path, "w"))
  with pytest.raises(
    ValueError,
    match=re.escape(
      f"{npz} holds final_params/0 as float64, the manifest's dtype is float32"
    ),
  ):
    runs.load_run(store, "tiny", spec)


def test_corrupt_store_is_never_deleted(tiny_data, trained, store):
  spec = _spec(tiny_data)
  path = runs.save_run(store, "tiny", spec, trained)
  _corrupt_copy(store, spec, "npz truncated")
  before = sorted(os.listdir(path))
  with pytest.raises(ValueError):
    runs.load_run(store, "tiny", spec)
  assert sorted(os.listdir(path)) == before
  shutil.rmtree(path)  # What the error message tells the user to do.
  with pytest.raises(FileNotFoundError):
    runs.load_run(store, "tiny", spec)
