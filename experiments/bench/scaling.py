"""Part 3: throughput against batch width, chunk size and device count.

Throughput against the number of points batched in one program (chunk = all
points), time and XLA peak memory (``Sweep.memory_analysis``) against
``SGLDConfig.chunk_size``, and time against the number of forced host
devices (subprocesses with ``--xla_force_host_platform_device_count``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax

from experiments.bench import workload
from slt_jax import persist
from slt_jax.grokking import data, losses


def scaling(
  cfg: workload.BenchConfig,
  engine: workload.Engine,
  ref: dict,
  key,
  w_star_path: str,
  seed: int,
) -> dict:
  """Part 3: batch width, chunk size and forced device count."""
  width_rows = []
  for count in cfg.scaling_points:
    sgld = workload.short(cfg, chunk_size=count)
    params = workload.points(ref, count)
    _, timing = engine.timed(key, sgld, params, warm="compile")
    width_rows.append(
      {"points": count, "batched_chains": count * sgld.num_chains, **timing}
    )
    print(
      f"batched chains {count * sgld.num_chains}: "
      f"{timing['steps_per_second']:.0f} SGLD steps/s"
    )
  chunk_rows = []
  params = workload.points(ref, cfg.chunk_points)
  for size in (None,) + tuple(cfg.chunk_sizes):
    sgld = workload.short(cfg, chunk_size=size)
    _, timing = engine.timed(key, sgld, params, warm="compile")
    chunk_rows.append({"chunk_size": size if size else "auto", **timing})
    print(
      f"chunk_size {size or 'auto'} ({timing['chunk']} points): "
      f"{timing['seconds']:.2f} s, peak "
      f"{chunk_rows[-1]['memory']['peak_bytes'] / 2**20:.0f} MiB"
    )
  device_rows = []
  for count in cfg.device_counts:
    spec = {
      "cfg": workload.config_json(cfg),
      "w_star": w_star_path,
      "points": cfg.device_points,
      "seed": seed,
    }
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
      env.get("XLA_FLAGS", "") + " --xla_force_host_platform"
      f"_device_count={count}"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
      [
        sys.executable,
        "-c",
        "import sys; from experiments.bench import scaling; "
        "scaling.device_worker(sys.argv[1])",
        json.dumps(spec),
      ],
      env=env,
      capture_output=True,
      text=True,
      check=False,
    )
    if proc.returncode:
      raise RuntimeError(
        f"device worker ({count} devices) failed:\n{proc.stderr[-3000:]}"
      )
    device_rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(
      f"{count} host devices: "
      f"{device_rows[-1]['steps_per_second']:.0f} SGLD steps/s"
    )
  return {
    "batch_width": width_rows,
    "chunk_size": chunk_rows,
    "devices": device_rows,
  }


def device_worker(spec_json: str) -> None:
  """Times the engine on all visible (forced host) devices; prints JSON.

  Run in a subprocess by ``scaling`` with ``XLA_FLAGS`` set, so that the
  device count is fixed before JAX starts.
  """
  spec = json.loads(spec_json)
  cfg = workload.config_from_json(spec["cfg"])
  saved = persist.load_npz(spec["w_star"])
  ref = {"checkpoints": {"W": saved["W"], "V": saved["V"]}}
  dataset = data.modular_arithmetic(
    jax.random.split(jax.random.key(spec["seed"]))[0], workload.data_config(cfg)
  )
  engine = workload.Engine(losses.make_loss("centered_mse"), dataset.train)
  _, timing = engine.timed(
    jax.random.key(spec["seed"]),
    workload.short(cfg),
    workload.points(ref, spec["points"]),
  )
  print(
    json.dumps(
      {"devices": len(jax.devices()), "points": spec["points"], **timing}
    )
  )
