"""Part 6: the network's two first-layer forms on the device at hand (issue 14).

``slt_jax.grokking.model`` forms ``W[:, a] + W[:, p + b]`` either as a one-hot matmul
(14·B·K·p FLOPs per gradient step) or as two row gathers (6·B·K·p, with a
scatter-add gradient); ``model.default_form()`` picks one per backend. This
part times both, side by side in one process on the reference workload:
SGLD steps/s of one warm sweep (the scaling sweeps' shorter chains, at
``BenchConfig.device_points`` points) and training steps/s of one run, and
says which form is faster here, so the per-backend default is checked by
numbers wherever a device is available.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from experiments.bench import workload
from slt_jax.grokking import data, losses, model, train
from slt_jax.grokking.config import ModelConfig, TrainConfig


def forms(cfg: workload.BenchConfig, ref: dict, key) -> dict:
  """SGLD and training steps/s for each of ``model.FORMS``.

  Returns:
    ``{"default": model.default_form(), "sgld": {form: timing},
    "training": {form: steps/s}, "faster": {"sgld": form, "training": form},
    "max_llc_difference": float}`` (the per-chain estimates of the two forms
    agree up to float rounding, the check that they run the same chains).
  """
  sgld_cfg = workload.short(cfg)
  params = workload.points(ref, cfg.device_points)
  chunk = cfg.train_chunk_steps
  train_cfg = TrainConfig(
    batch_size=cfg.sgld.batch_size,
    num_steps=3 * chunk,
    log_every=chunk,
    ckpt_every=chunk,
    chunk_steps=chunk,
  )
  dataset: data.ModularData = ref["dataset"]
  sgld, training, estimates = {}, {}, {}
  for form in model.FORMS:
    engine = workload.Engine(
      losses.make_loss("centered_mse", form), dataset.train
    )
    result, sgld[form] = engine.timed(key, sgld_cfg, params)
    estimates[form] = np.asarray(result.per_chain)
    training[form] = train.train(
      key,
      dataset,
      ModelConfig(p=cfg.p, width=cfg.width),
      train_cfg,
      progress=False,
      form=form,
    ).steps_per_second
    print(
      f"form {form}: SGLD {sgld[form]['steps_per_second']:.0f} steps/s, "
      f"training {training[form]:.0f} steps/s"
    )
  faster = {
    "sgld": max(model.FORMS, key=lambda f: sgld[f]["steps_per_second"]),
    "training": max(model.FORMS, key=training.get),
  }
  return {
    "backend": jax.default_backend(),
    "default": model.default_form(),
    "sgld_config": dataclasses.asdict(sgld_cfg),
    "points": cfg.device_points,
    "sgld": sgld,
    "training": training,
    "faster": faster,
    "gather_over_one_hot": {
      "sgld": (
        sgld["gather"]["steps_per_second"] / sgld["one_hot"]["steps_per_second"]
      ),
      "training": training["gather"] / training["one_hot"],
    },
    "max_llc_difference": float(
      np.max(np.abs(estimates["gather"] - estimates["one_hot"]))
    ),
  }
