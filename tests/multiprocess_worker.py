"""One process of tests/test_distributed.py: a small LLC sweep and training grid.

Usage: ``python tests/multiprocess_worker.py OUT PROCESS_ID NUM_PROCESSES PORT
DEVICES TIMEOUT_S``. Forces DEVICES host devices, joins NUM_PROCESSES processes
through ``slt_jax.distributed.initialize`` when more than one, and runs
``compute(OUT)``, writing ``OUT/result_<PROCESS_ID>.npz``.
"""

import os
import sys


def compute(out: str) -> dict:
  """Runs the sweep twice into ``out/llc_parts`` (the second run resumes from
  the saved parts), trains into ``out/train`` and twice through the run store
  ``out/runs`` (the second call loads); returns what this process received
  and how many files it wrote."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from slt_jax import persist
  from slt_jax.grokking import data, runs, train
  from slt_jax.grokking.config import DataConfig, ModelConfig, TrainConfig
  from slt_jax.llc import SGLDSettings, estimate_llc
  from slt_jax.llc.config import SGLDConfig

  writes = []
  save_npz = persist.save_npz
  persist.save_npz = lambda path, arrays: (
    writes.append(path),
    save_npz(path, arrays),
  )
  try:
    loss = lambda w, batch: 0.5 * jnp.mean(jnp.sum((batch - w[None]) ** 2, -1))
    # 5 points x 2 settings = 10 items: padded to a multiple of the devices.
    points = np.linspace(-0.5, 0.5, 15, dtype=np.float32).reshape(5, 3)
    examples = jax.random.normal(jax.random.key(1), (64, 3))
    cfg = SGLDConfig(
      step_size=1e-3,
      nbeta=20.0,
      localization=1.0,
      num_chains=2,
      num_draws=30,
      num_burnin=10,
      batch_size=16,
      chunk_size=4,
    )
    sweeps = [
      estimate_llc(
        jax.random.key(2),
        loss,
        points,
        examples,
        cfg,
        1,
        settings=SGLDSettings(step_size=[1e-3, 5e-4]),
        out_path=os.path.join(out, "llc_parts"),
        progress=False,
        warn=False,
      )
      for _ in range(2)
    ]
    llc_writes = len(writes)
    tiny = data.modular_arithmetic(
      jax.random.key(3), DataConfig(p=5, num_train=15)
    )
    train_args = (
      jax.random.key(4),
      tiny,
      ModelConfig(p=5, width=8),
      TrainConfig(
        lr=1e-2,
        batch_size=5,
        num_steps=40,
        log_every=10,
        ckpt_every=20,
        chunk_steps=20,
      ),
    )
    run = train.train(
      *train_args, seeds=3, out_dir=os.path.join(out, "train"), progress=False
    )
    train_writes = len(writes) - llc_writes
    stored = [
      runs.get_or_train(
        os.path.join(out, "runs"), "tiny", *train_args, seeds=3, progress=False
      )
      for _ in range(2)
    ]
  finally:
    persist.save_npz = save_npz
  for result in stored:
    np.testing.assert_array_equal(result.checkpoints["W"], run.checkpoints["W"])
  return dict(
    per_chain=sweeps[0].per_chain,
    resumed=sweeps[1].per_chain,
    loss_trace=sweeps[0].loss_trace,
    W=run.checkpoints["W"],
    V=run.checkpoints["V"],
    val_loss=run.metrics["val_loss"],
    llc_writes=llc_writes,
    train_writes=train_writes,
    stored_runs=len(os.listdir(os.path.join(out, "runs"))),
  )


if __name__ == "__main__":
  out, process_id, num_processes, port, devices, timeout_s = (
    sys.argv[1],
    *map(int, sys.argv[2:]),
  )
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  import jax
  import numpy as np

  from slt_jax import distributed

  if num_processes > 1:
    distributed.initialize(
      f"127.0.0.1:{port}", num_processes, process_id, timeout_s=timeout_s
    )
  assert len(jax.devices()) == devices * num_processes
  np.savez(os.path.join(out, f"result_{process_id}.npz"), **compute(out))
