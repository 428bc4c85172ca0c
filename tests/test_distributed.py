"""Sweeps and training over two real processes (jax.distributed, gloo on CPU).

Each case starts ``tests/multiprocess_worker.py`` in fresh interpreters (the
device count is fixed at JAX start-up) and kills them if they outlive a
timeout, so a hang fails the test instead of blocking the suite.
"""

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from slt_jax import distributed

sys.path.insert(0, os.path.dirname(__file__))
import multiprocess_worker  # noqa: E402

pytestmark = pytest.mark.slow  # two real processes each: the slow tier

WORKER = os.path.join(os.path.dirname(__file__), "multiprocess_worker.py")
TIMEOUT_S = 240


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(out, process_id, num_processes, port, devices, timeout_s=30):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return subprocess.Popen(
    [
      sys.executable,
      WORKER,
      str(out),
      str(process_id),
      str(num_processes),
      str(port),
      str(devices),
      str(timeout_s),
    ],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    env=env,
  )


def _finish(procs) -> list[str]:
  """Waits for every process (killing all on timeout); returns their stderr."""
  try:
    errors = [p.communicate(timeout=TIMEOUT_S)[1] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  return errors


def _run(out, num_processes, devices) -> list[dict]:
  os.makedirs(out)
  port = _free_port()
  procs = [
    _start(out, i, num_processes, port, devices) for i in range(num_processes)
  ]
  errors = _finish(procs)
  for p, err in zip(procs, errors):
    assert p.returncode == 0, err[-3000:]
  return [
    dict(np.load(os.path.join(out, f"result_{i}.npz")))
    for i in range(num_processes)
  ]


# Compile-bound (tiny programs, in three interpreters): see
# conftest.cheap_compiles, whose flag the workers inherit.
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_two_processes_equal_one_process_with_as_many_devices(tmp_path):
  (single,) = _run(tmp_path / "single", 1, 4)
  pair = _run(tmp_path / "pair", 2, 2)
  os.makedirs(tmp_path / "here")
  unsharded = multiprocess_worker.compute(str(tmp_path / "here"))  # 1 device
  for name in ("per_chain", "resumed", "loss_trace", "W", "V", "val_loss"):
    for got in pair:  # Every process receives the full result, bit for bit.
      np.testing.assert_array_equal(got[name], single[name], err_msg=name)
    # Sharding changes nothing but float rounding in the batched matmuls.
    np.testing.assert_allclose(
      unsharded[name], single[name], rtol=1e-5, atol=1e-6, err_msg=name
    )
  assert single["per_chain"].shape == (2, 5, 2)  # settings x points x chains
  np.testing.assert_array_equal(single["resumed"], single["per_chain"])
  # Only process 0 writes: 3 LLC parts once (the rerun resumes from them),
  # then 2 training chunks x (chunk file + state file).
  assert [int(r["llc_writes"]) for r in pair] == [3, 0]
  assert [int(r["train_writes"]) for r in pair] == [4, 0]
  assert [int(r["stored_runs"]) for r in pair] == [1, 1]
  assert sorted(os.listdir(tmp_path / "pair" / "llc_parts")) == [
    "owner.json",
    *[f"part_{i:05d}.npz" for i in range(3)],
  ]


def test_missing_peer_is_a_clear_error_not_a_hang(tmp_path):
  # Process 1 never starts: after timeout_s XLA ends process 0 with its
  # fatal error (a C++ abort, not a Python exception).
  start = time.perf_counter()
  (proc,) = [_start(tmp_path, 0, 2, _free_port(), 1, timeout_s=3)]
  (err,) = _finish([proc])
  assert proc.returncode != 0
  assert "JAX distributed service detected fatal errors" in err, err[-3000:]
  assert "DEADLINE_EXCEEDED" in err
  assert time.perf_counter() - start < 60


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(num_processes=0, process_id=0), "num_processes=0"),
    (dict(num_processes=2, process_id=2), "process_id=2"),
    (dict(num_processes=2, process_id=1.0), "process_id=1.0"),
  ],
)
def test_initialize_rejects_bad_ids(kwargs, message):
  with pytest.raises(ValueError, match=message):
    distributed.initialize("127.0.0.1:1", **kwargs)


def test_pad_index_and_single_process_helpers():
  mesh = distributed.work_mesh()
  assert distributed.padded_size(0, mesh) == mesh.devices.size
  np.testing.assert_array_equal(distributed.pad_index(2, 5), [0, 1, 1, 1, 1])
  x = np.arange(6.0).reshape(len(mesh.devices.flat) * 6 // 6, -1)
  np.testing.assert_array_equal(
    distributed.fetch(distributed.put(x, distributed.sharded(mesh))), x
  )
  distributed.check_agreement([1, 2], "anything")  # one process: no-op


def test_experiment_flags_need_a_coordinator():
  from experiments import cli

  with pytest.raises(SystemExit):
    cli.parse_args("x", argv=["--num-processes", "2"])
  assert cli.parse_args("x", argv=[]).num_processes == 1
