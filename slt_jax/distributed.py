"""One axis of work over every device of every process (``jax.distributed``).

JAX's multi-controller model: every process (one per host, or one per
accelerator) runs the same Python program on the same host data, and
``initialize`` joins them into one runtime whose ``jax.devices()`` are all
processes' devices. The LLC engine (its work items) and ``train`` (its runs)
shard one leading axis over a mesh of those devices: ``put`` builds a global
array from host data that every process holds in full (each process supplies
its own devices' shards), ``fetch`` brings a global array back to every
process in full, and only the ``is_writer`` process writes files, so no two
processes ever write the same file. With one process every function here is
the plain single-process operation.

Example:
  >>> mesh = work_mesh()
  >>> x = put(np.arange(4.0 * len(jax.devices())), sharded(mesh))
  >>> fetch(x).shape == (4 * len(jax.devices()),), is_writer()
  (True, True)
"""

from __future__ import annotations

import math
import socket
from typing import Optional, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from slt_jax.checks import check, is_int
from slt_jax.tree_types import ArrayTree

__all__ = [
  "initialize",
  "work_mesh",
  "sharded",
  "replicated",
  "put",
  "fetch",
  "padded_size",
  "pad_index",
  "is_writer",
  "check_agreement",
  "wait_for_writer",
]

AXIS = "work"


def initialize(
  coordinator_address: str,
  num_processes: int,
  process_id: int,
  *,
  timeout_s: int = 60,
  local_device_ids: Optional[Sequence[int]] = None,
) -> None:
  """Joins this process to a multi-process JAX runtime.

  Call it first, before any JAX computation. CPU collectives use gloo. The
  arguments are checked, and the coordinator's host resolved, before JAX is
  called, so a malformed or unresolvable address is a Python exception.

  What cannot be caught: a peer that never joins within ``timeout_s`` (never
  started, or started with another address or process count), a
  coordinator that resolves but never answers, or a peer that stops sending
  heartbeats for that long, ends every process with XLA's fatal error ("the
  JAX distributed service detected fatal errors ... DEADLINE_EXCEEDED")
  instead of a hang; XLA terminates the process itself (a C++ abort, not a
  Python exception).

  Args:
    coordinator_address: ``"HOST:PORT"`` of process 0 (every process passes
      the same address); HOST is a name or an IP address (IPv6 in brackets,
      ``"[::1]:1234"``), PORT an integer in [1, 65535].
    num_processes: number of processes, >= 1.
    process_id: this process, in ``[0, num_processes)``.
    timeout_s: seconds to wait for every process to join, and the heartbeat
      timeout after which a silent peer counts as failed.
    local_device_ids: devices of this host that this process drives (e.g.
      ``[i]`` for one process per GPU); None: all of them.

  Raises:
    ValueError: for a bad count, id or timeout, or an address that is not
      ``"HOST:PORT"`` with a port in [1, 65535].
    RuntimeError: if the coordinator's host cannot be resolved, or JAX's
      initialisation raises.
  """
  for name, value, low in (
    ("num_processes", num_processes, 1),
    ("process_id", process_id, 0),
    ("timeout_s", timeout_s, 1),
  ):
    check(
      is_int(value) and value >= low,
      name,
      value,
      f"must be an integer >= {low}",
    )
  if process_id >= num_processes:
    raise ValueError(
      f"process_id={process_id} is invalid: must be < "
      f"num_processes={num_processes}"
    )
  _check_coordinator_address(coordinator_address)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(
      coordinator_address=coordinator_address,
      num_processes=num_processes,
      process_id=process_id,
      local_device_ids=local_device_ids,
      initialization_timeout=timeout_s,
      heartbeat_timeout_seconds=timeout_s,
    )
  except Exception as err:  # XLA raises its own error types.
    raise RuntimeError(
      f"process {process_id} of {num_processes} could not join the runtime "
      f"coordinated at {coordinator_address}: are all {num_processes} "
      f"processes started with the same address? ({err})"
    ) from err


def _check_coordinator_address(address: str) -> None:
  """Checks that ``address`` is ``"HOST:PORT"`` and that HOST resolves.

  >>> _check_coordinator_address("127.0.0.1:1234")
  >>> _check_coordinator_address("h:0")
  Traceback (most recent call last):
  ...
  ValueError: coordinator_address='h:0' is invalid: port 0 is not in [1, 65535]

  Raises:
    ValueError: naming the address when it is not ``"HOST:PORT"`` or the port
      is out of range.
    RuntimeError: naming the address and host when the host cannot be
      resolved.
  """
  name, form = (
    "coordinator_address",
    "must be 'HOST:PORT', e.g. '10.0.0.1:1234'",
  )
  check(isinstance(address, str), name, address, form)
  host, _, port = address.rpartition(":")
  if host.startswith("[") and host.endswith("]"):
    host = host[1:-1]  # IPv6: [::1]:1234.
  check(bool(host) and port.isascii() and port.isdigit(), name, address, form)
  check(
    1 <= int(port) <= 65535, name, address, f"port {port} is not in [1, 65535]"
  )
  try:
    socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
  except OSError as err:  # socket.gaierror: an unknown host.
    raise RuntimeError(
      f"{name}={address!r} cannot be used: host {host!r} does not resolve "
      f"({err})"
    ) from err


def work_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D mesh (axis ``"work"``) over ``devices`` (default: all processes')."""
  return Mesh(
    np.array(list(devices) if devices is not None else jax.devices()), (AXIS,)
  )


def sharded(mesh: Mesh) -> NamedSharding:
  """Leading axis split over the mesh."""
  return NamedSharding(mesh, PartitionSpec(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of the mesh."""
  return NamedSharding(mesh, PartitionSpec())


def put(tree: ArrayTree, sharding: NamedSharding) -> ArrayTree:
  """Global arrays laid out by ``sharding`` from host values that every
  process holds in full (each process copies only its devices' shards)."""

  def one(x):
    x = (
      x
      if isinstance(x, jax.Array) and x.is_fully_addressable
      else np.asarray(x)
    )
    return jax.make_array_from_callback(
      np.shape(x), sharding, lambda index: x[index]
    )

  return jax.tree.map(one, tree)


def fetch(tree: ArrayTree) -> ArrayTree:
  """Host (numpy) copies of global arrays, in full on every process.

  A collective when arrays span processes: every process must call it.
  """

  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)

  return jax.tree.map(one, tree)


def padded_size(size: int, mesh: Mesh) -> int:
  """``size`` rounded up to a multiple of the mesh's device count (>= 1 row
  per device)."""
  count = mesh.devices.size
  return count * math.ceil(max(size, 1) / count)


def pad_index(size: int, padded: int) -> np.ndarray:
  """Row indices that pad ``size`` rows to ``padded`` by repeating the last.

  >>> pad_index(3, 4)
  array([0, 1, 2, 2])
  """
  return np.minimum(np.arange(padded), size - 1)


def is_writer() -> bool:
  """True on the one process (0) that writes results and resume files."""
  return jax.process_index() == 0


def check_agreement(values: np.ndarray, what: str) -> None:
  """Raises unless every process holds the same small integer array.

  Used where processes read resume files on their own: they must see the same
  files (a file system shared by all of them), or their programs would differ.

  Raises:
    RuntimeError: naming ``what`` when processes disagree.
  """
  if jax.process_count() == 1:
    return
  values = np.asarray(values, np.int32).reshape(-1)
  gathered = multihost_utils.process_allgather(values)  # (processes, n)
  if not (gathered == gathered[0]).all():
    raise RuntimeError(
      f"processes disagree on {what} (process {jax.process_index()} sees "
      f"{values.tolist()}, all: {gathered.tolist()}): the output folder must "
      "be on a file system that every process reads"
    )


def wait_for_writer(what: str) -> None:
  """Blocks every process until all reach this point (after the writer has
  written ``what``), so that no process reads files the writer is still
  writing. A no-op with one process."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(what)
