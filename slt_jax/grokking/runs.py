"""A store of trained runs: each ``train`` result is a fingerprinted artifact.

A run is determined by its *spec* (``run_spec``): the training key, the data
(a SHA-256 of its pairs and labels, so any way of making the same split gives
one spec), ``ModelConfig``, ``TrainConfig`` (early stopping included), the
seeds and the lr / weight-decay / train-size grids, plus ``FORMAT_VERSION``.
``persist.fingerprint(spec)`` is the SHA-256 of the spec's canonical JSON. A
store is a folder of run directories::

  <store>/<label>-<fingerprint[:12]>/manifest.json   spec, fingerprint, format,
                                                      time, shapes, checksum
  <store>/<label>-<fingerprint[:12]>/run.npz         the TrainResult's arrays
  <store>/<label>-<fingerprint[:12]>.partial/        train's resumable state

``get_or_train`` loads a published run or trains it into the ``.partial``
folder (so an interrupted training resumes) and publishes it when complete.
Publishing writes a temporary directory and renames it into place, so a run
directory is either whole or absent. Nothing is ever loaded silently: a run
directory whose manifest is unreadable, of another format, of another
fingerprint, or whose ``run.npz`` is missing, fails its checksum or does not
match the manifest's arrays (names, shapes, dtypes) raises a ``ValueError``
naming the file; nothing
is deleted or retrained behind the caller's back (delete the directory to
retrain). Arrays are ``.npz`` without pickle (``slt_jax.persist``).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import re
import shutil
import tempfile
import zipfile
from typing import Any, Optional, Sequence

import jax
import numpy as np

from slt_jax import distributed, persist
from slt_jax.grokking import model, train
from slt_jax.grokking.config import ModelConfig, TrainConfig
from slt_jax.grokking.data import ModularData
from slt_jax.tree_types import PRNGKey

__all__ = [
  "key_spec",
  "data_spec",
  "run_spec",
  "run_name",
  "run_dir",
  "is_complete",
  "save_run",
  "load_run",
  "get_or_train",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = "run.npz"
PARTIAL_SUFFIX = ".partial"


def key_spec(key: PRNGKey) -> dict:
  """A PRNG key as JSON: its implementation and its raw data.

  Args:
    key: a typed key (``jax.random.key``) or a raw uint32 key.

  Returns:
    ``{"impl": str, "data": nested list of ints}``.

  Example:
    >>> import jax
    >>> key_spec(jax.random.key(3))
    {'impl': 'threefry2x32', 'data': [0, 3]}
  """
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    return {
      "impl": str(jax.random.key_impl(key)),
      "data": np.asarray(jax.random.key_data(key)).tolist(),
    }
  return {"impl": "raw", "data": np.asarray(key).tolist()}


def data_spec(data: ModularData) -> dict:
  """What identifies a data set: p, sizes and a SHA-256 of its arrays.

  Args:
    data: the data set (all pairs, training prefix first).

  Returns:
    ``{"p", "num_pairs", "num_train", "sha256"}``.

  Example:
    >>> import jax
    >>> from slt_jax.grokking import data as D
    >>> from slt_jax.grokking.config import DataConfig
    >>> d = D.modular_arithmetic(jax.random.key(0),
    ...                          DataConfig(p=5, num_train=12))
    >>> s = data_spec(d); s["num_pairs"], s["num_train"], len(s["sha256"])
    (25, 12, 64)
  """
  digest = hashlib.sha256()
  for x in (data.all.pairs, data.all.labels, data.all.weights):
    x = np.asarray(x)
    digest.update(f"{x.dtype}{x.shape}".encode())
    digest.update(np.ascontiguousarray(x).tobytes())
  return {
    "p": int(data.p),
    "num_pairs": int(data.all.labels.shape[0]),
    "num_train": int(data.num_train),
    "sha256": digest.hexdigest(),
  }


def run_spec(
  key: PRNGKey,
  data: ModularData,
  model_cfg: ModelConfig,
  train_cfg: TrainConfig,
  *,
  seeds: int = 1,
  seed_ids: Optional[Sequence[int]] = None,
  lrs: Optional[Sequence[float]] = None,
  weight_decays: Optional[Sequence[float]] = None,
  num_trains: Optional[Sequence[int]] = None,
) -> dict:
  """Everything that determines a ``train.train`` call's result, as JSON.

  The arguments are those of ``train.train``; the seeds and grids are checked
  and resolved by ``train.resolve_grid``, as ``train`` does (so ``lrs=None``
  and ``lrs=[cfg.lr]`` are one run).

  Returns:
    A JSON-able dict (``persist.fingerprint`` hashes it).

  Raises:
    ValueError: for seeds or grids that ``train`` refuses (naming the value).

  Example:
    >>> import jax
    >>> from slt_jax.grokking import data as D
    >>> from slt_jax.grokking.config import DataConfig
    >>> d = D.modular_arithmetic(jax.random.key(0),
    ...                          DataConfig(p=5, num_train=12))
    >>> spec = run_spec(jax.random.key(1), d, ModelConfig(p=5, width=8),
    ...                 TrainConfig(batch_size=4), seeds=2)
    >>> spec["seed_ids"], spec["lrs"], spec["num_trains"]
    ([0, 1], [0.001], [12])
  """
  grid = train.resolve_grid(
    train_cfg,
    data,
    seeds=seeds,
    seed_ids=seed_ids,
    lrs=lrs,
    weight_decays=weight_decays,
    num_trains=num_trains,
  )
  return {
    "format_version": FORMAT_VERSION,
    "key": key_spec(key),
    "data": data_spec(data),
    "model": dataclasses.asdict(model_cfg),
    "train": dataclasses.asdict(train_cfg),
    **grid,
  }


def run_name(label: str, spec: dict) -> str:
  """``<label>-<fingerprint[:12]>``, the label reduced to ``[A-Za-z0-9._-]``.

  Example:
    >>> run_name("p=53 K=1024", {"a": 1})[:12]
    'p_53_K_1024-'
  """
  slug = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "run"
  return f"{slug}-{persist.fingerprint(spec)[:12]}"


def run_dir(store: str, label: str, spec: dict) -> str:
  """The directory of a run in ``store`` (see ``run_name``).

  Example:
    >>> run_dir("runs", "fig3", {"a": 1}).startswith("runs/fig3-")
    True
  """
  return os.path.join(store, run_name(label, spec))


def is_complete(result: train.TrainResult, train_cfg: TrainConfig) -> bool:
  """Whether a ``train`` result ran to its end: all ``num_steps``, or every
  run stopped early.

  Example:
    >>> import numpy as np
    >>> r = train.TrainResult(None, None, np.arange(0, 1001, 50), {}, {}, None,
    ...                       0.0, np.array([-1]))
    >>> is_complete(r, TrainConfig(num_steps=2000))
    False
  """
  return int(result.log_steps[-1]) == train_cfg.num_steps or bool(
    np.all(np.asarray(result.stop_step) >= 0)
  )


def _result_arrays(result: train.TrainResult) -> dict[str, np.ndarray]:
  arrays = {
    **persist.tree_to_arrays("checkpoints", result.checkpoints),
    **persist.tree_to_arrays("final_params", result.final_params),
    "ckpt_steps": result.ckpt_steps,
    "log_steps": result.log_steps,
    "stop_step": result.stop_step,
    "steps_per_second": np.float64(result.steps_per_second),
  }
  arrays.update({f"metrics/{k}": v for k, v in result.metrics.items()})
  arrays.update({f"hparams/{k}": v for k, v in result.hparams.items()})
  return {k: np.asarray(v) for k, v in arrays.items()}


def _sha256_file(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      digest.update(block)
  return digest.hexdigest()


def _write_run(
  folder: str, label: str, spec: dict, result: train.TrainResult, provenance
) -> None:
  """Writes ``run.npz`` and its manifest into ``folder``."""
  arrays = _result_arrays(result)
  persist.save_npz(os.path.join(folder, ARRAYS), arrays)
  persist.save_json(
    os.path.join(folder, MANIFEST),
    {
      "format_version": FORMAT_VERSION,
      "fingerprint": persist.fingerprint(spec),
      "label": label,
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
      "spec": spec,
      "provenance": provenance,
      "shapes": {k: list(v.shape) for k, v in arrays.items()},
      "dtypes": {k: str(v.dtype) for k, v in arrays.items()},
      "arrays_sha256": _sha256_file(os.path.join(folder, ARRAYS)),
      "steps_per_second": result.steps_per_second,
      "stop_step": result.stop_step,
      "jax_version": jax.__version__,
    },
  )


def save_run(
  store: str,
  label: str,
  spec: dict,
  result: train.TrainResult,
  *,
  provenance: Optional[dict] = None,
) -> str:
  """Publishes a trained run in ``store`` atomically.

  The files are written into a temporary directory of ``store``, which is
  then renamed to ``run_dir(store, label, spec)``.

  Args:
    store: the store folder (created if needed).
    label: readable part of the directory name.
    spec: the run's ``run_spec``.
    result: what ``train.train`` returned for it.
    provenance: JSON-able notes for the manifest that do not enter the
      fingerprint (e.g. the DataConfig and key the data came from).

  Returns:
    The run directory.

  Raises:
    FileExistsError: the run is already stored (load it, or delete it first).

  Example:
    >>> import jax, tempfile
    >>> from slt_jax.grokking import data as D
    >>> from slt_jax.grokking.config import DataConfig
    >>> d = D.modular_arithmetic(jax.random.key(0),
    ...                          DataConfig(p=5, num_train=12))
    >>> m = ModelConfig(p=5, width=8)
    >>> c = TrainConfig(batch_size=4, num_steps=20, log_every=10,
    ...                 ckpt_every=10, chunk_steps=20)
    >>> r = train.train(jax.random.key(1), d, m, c, progress=False)
    >>> spec = run_spec(jax.random.key(1), d, m, c)
    >>> store = tempfile.mkdtemp()
    >>> path = save_run(store, "demo", spec, r)
    >>> sorted(os.listdir(path))
    ['manifest.json', 'run.npz']
    >>> load_run(store, "demo", spec).checkpoints["W"].shape
    (1, 2, 8, 10)
  """
  final = run_dir(store, label, spec)
  if os.path.exists(final):
    raise FileExistsError(
      f"{final} already exists: load it with load_run, "
      "or delete it to store the run anew"
    )
  os.makedirs(store, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=store, prefix=f".tmp-{os.path.basename(final)}-")
  try:
    _write_run(tmp, label, spec, result, provenance or {})
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700 directories.
    try:
      os.rename(tmp, final)
    except OSError as err:
      if os.path.exists(final):  # Published meanwhile by another process.
        raise FileExistsError(
          f"{final} was stored meanwhile by another "
          "process: load it with load_run"
        ) from err
      raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return final


def _corrupt(path: str, what: str, run: str) -> ValueError:
  return ValueError(
    f"{path} {what}: the stored run {run} cannot be loaded; "
    "delete that directory to retrain it"
  )


def _read_manifest(path: str, spec: dict) -> dict:
  """The manifest of the run directory ``path``, checked against ``spec``."""
  manifest_path = os.path.join(path, MANIFEST)
  try:
    manifest = persist.load_json(manifest_path)
    version, stored_fp = manifest["format_version"], manifest["fingerprint"]
    missing = {"shapes", "dtypes", "arrays_sha256"} - set(manifest)
  except (OSError, ValueError, KeyError, TypeError) as err:
    raise _corrupt(
      manifest_path, f"is unreadable ({type(err).__name__}: {err})", path
    ) from err
  if missing:
    raise _corrupt(manifest_path, f"lacks {sorted(missing)}", path)
  if version != FORMAT_VERSION:
    raise _corrupt(
      manifest_path,
      f"has format_version={version!r}, this code reads {FORMAT_VERSION}",
      path,
    )
  if stored_fp != persist.fingerprint(spec):
    raise _corrupt(
      manifest_path,
      f"has fingerprint {stored_fp}, but the "
      f"requested run's is {persist.fingerprint(spec)}",
      path,
    )
  return manifest


def _check_arrays(arrays_path: str, arrays: dict, manifest: dict, run: str):
  """Raises unless ``arrays`` have the manifest's names, shapes and dtypes."""
  shapes, dtypes = manifest["shapes"], manifest["dtypes"]
  if set(arrays) != set(shapes):
    raise _corrupt(
      arrays_path,
      f"holds the arrays {sorted(arrays)}, the manifest lists {sorted(shapes)}",
      run,
    )
  for name, x in arrays.items():
    if list(x.shape) != shapes[name]:
      raise _corrupt(
        arrays_path,
        f"holds {name} of shape {list(x.shape)}, the manifest's is "
        f"{shapes[name]}",
        run,
      )
    if str(x.dtype) != dtypes.get(name):
      raise _corrupt(
        arrays_path,
        f"holds {name} as {x.dtype}, the manifest's dtype is "
        f"{dtypes.get(name)}",
        run,
      )


def _read_arrays(path: str, manifest: dict) -> dict[str, np.ndarray]:
  """``run.npz`` of the run directory ``path``, checked against the
  manifest's checksum and arrays."""
  arrays_path = os.path.join(path, ARRAYS)
  try:
    actual = _sha256_file(arrays_path)
  except OSError as err:
    raise _corrupt(
      arrays_path, f"is unreadable ({type(err).__name__}: {err})", path
    ) from err
  if actual != manifest["arrays_sha256"]:
    raise _corrupt(
      arrays_path, "is corrupt (its SHA-256 differs from the manifest's)", path
    )
  try:
    arrays = persist.load_npz(arrays_path)
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
    raise _corrupt(
      arrays_path, f"is unreadable ({type(err).__name__}: {err})", path
    ) from err
  _check_arrays(arrays_path, arrays, manifest, path)
  return arrays


def _result_from_arrays(arrays: dict, spec: dict) -> train.TrainResult:
  """The TrainResult of ``_result_arrays``' arrays."""
  template = jax.eval_shape(
    lambda k: model.init(k, ModelConfig(**spec["model"])), jax.random.key(0)
  )

  def prefixed(prefix):
    return {
      k.split("/", 1)[1]: v
      for k, v in arrays.items()
      if k.startswith(prefix + "/")
    }

  return train.TrainResult(
    checkpoints=persist.tree_from_arrays("checkpoints", arrays, template),
    ckpt_steps=arrays["ckpt_steps"],
    log_steps=arrays["log_steps"],
    metrics=prefixed("metrics"),
    hparams=prefixed("hparams"),
    final_params=persist.tree_from_arrays("final_params", arrays, template),
    steps_per_second=float(arrays["steps_per_second"]),
    stop_step=arrays["stop_step"],
  )


def load_run(store: str, label: str, spec: dict) -> train.TrainResult:
  """Loads a run stored by ``save_run``, checking it against ``spec``.

  Args:
    store: the store folder.
    label: the label it was saved under.
    spec: the ``run_spec`` it must match.

  Returns:
    The TrainResult, equal to the one saved.

  Raises:
    FileNotFoundError: the run is not in the store.
    ValueError: the directory exists but its manifest is unreadable or of
      another format or fingerprint, or ``run.npz`` is missing, corrupt or
      does not hold the manifest's arrays (names, shapes, dtypes); the
      message names the file (and the array).

  Example:
    >>> load_run("/nonexistent", "demo", {"a": 1})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: no stored run /nonexistent/demo-...
  """
  path = run_dir(store, label, spec)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no stored run {path}")
  arrays = _read_arrays(path, _read_manifest(path, spec))
  return _result_from_arrays(arrays, spec)


def get_or_train(
  store: str,
  label: str,
  key: PRNGKey,
  data: ModularData,
  model_cfg: ModelConfig,
  train_cfg: TrainConfig,
  *,
  seeds: int = 1,
  seed_ids: Optional[Sequence[int]] = None,
  lrs: Optional[Sequence[float]] = None,
  weight_decays: Optional[Sequence[float]] = None,
  num_trains: Optional[Sequence[int]] = None,
  provenance: Optional[dict[str, Any]] = None,
  max_chunks: Optional[int] = None,
  progress: bool = True,
) -> train.TrainResult:
  """Loads the run from ``store``, or trains and publishes it.

  Training resumes from (and checkpoints into) ``<run dir>.partial/``; the
  run is published only once complete (``is_complete``), after which the
  ``.partial`` folder is removed. A corrupt entry raises (see ``load_run``).
  With several processes (``slt_jax.distributed``) they train together and
  process 0 publishes; the store must be on a file system all of them read.

  Args:
    store: the store folder.
    label: readable part of the run's directory name.
    key, data, model_cfg, train_cfg, seeds, seed_ids, lrs, weight_decays,
      num_trains: as for ``train.train``.
    provenance: manifest notes outside the fingerprint (see ``save_run``).
    max_chunks: passed to ``train.train``; a run cut short by it is
      returned unpublished (and resumes on the next call).
    progress: show training progress.

  Returns:
    The TrainResult (loaded, or just trained).

  Example:
    >>> import jax, tempfile
    >>> from slt_jax.grokking import data as D
    >>> from slt_jax.grokking.config import DataConfig
    >>> d = D.modular_arithmetic(jax.random.key(0),
    ...                          DataConfig(p=5, num_train=12))
    >>> m = ModelConfig(p=5, width=8)
    >>> c = TrainConfig(batch_size=4, num_steps=20, log_every=10,
    ...                 ckpt_every=10, chunk_steps=20)
    >>> store = tempfile.mkdtemp()
    >>> r = get_or_train(store, "demo", jax.random.key(1), d, m, c,
    ...                  progress=False)
    >>> [n[:5] for n in os.listdir(store)]
    ['demo-']
  """
  grid = {
    "seeds": seeds,
    "seed_ids": seed_ids,
    "lrs": lrs,
    "weight_decays": weight_decays,
    "num_trains": num_trains,
  }
  spec = run_spec(key, data, model_cfg, train_cfg, **grid)
  path = run_dir(store, label, spec)
  stored = os.path.isdir(path)
  # Across processes (slt_jax.distributed) all must load, or all train.
  distributed.check_agreement([stored], f"whether {path} is stored")
  if stored:
    return load_run(store, label, spec)
  partial = path + PARTIAL_SUFFIX
  result = train.train(
    key,
    data,
    model_cfg,
    train_cfg,
    **grid,
    out_dir=partial,
    max_chunks=max_chunks,
    progress=progress,
  )
  if is_complete(result, train_cfg) and distributed.is_writer():
    save_run(store, label, spec, result, provenance=provenance)
    shutil.rmtree(partial, ignore_errors=True)
  distributed.wait_for_writer(f"publishing {path}")
  return result
