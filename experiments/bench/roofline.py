"""Part 2: the roofline of one SGLD chain-step.

float32 matmul FLOP/s (square and the model's shapes, one chain and a CPU
chunk's chains batched), the cost of one standard normal per PRNG
implementation, and the time of one chain-step split into matmul at the
measured peak, noise (in situ: the same chunk timed with
``SGLDConfig(noise="zeros")``) and the rest.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import jax
import jax.numpy as jnp

from experiments.bench import workload
from slt_jax import llc
from slt_jax.llc.config import NOISE_IMPLS
from slt_jax.samplers import sgld


def _noise_ablation(
  cfg: workload.BenchConfig, engine: workload.Engine, ref: dict, key
) -> dict:
  """Seconds per chain-step of one CPU chunk with and without its noise.

  The noise-free run is the same sweep with ``noise="zeros"`` (the
  documented benchmark ablation: the draws become zeros), so the same
  program minus the draws is timed: the in-situ cost of the noise, which XLA
  fuses into the update and which is lower than drawing the normals alone.
  Each sweep is compiled once and its run timed three times (best kept).
  """
  sgld_cfg = dataclasses.replace(
    workload.short(cfg), num_draws=4 * cfg.scaling_draws
  )
  params = workload.points(
    ref, max(1, llc.CPU_CHAINS_PER_CHUNK // sgld_cfg.num_chains)
  )
  seconds = {}
  for name, noise in (
    ("with_noise", sgld_cfg.noise),
    ("without_noise", "zeros"),
  ):
    _, timing = engine.timed(
      key, dataclasses.replace(sgld_cfg, noise=noise), params, repeats=3
    )
    seconds[name] = 1.0 / timing["steps_per_second"]
  seconds["noise_in_situ"] = seconds["with_noise"] - seconds["without_noise"]
  return seconds


def roofline(
  cfg: workload.BenchConfig,
  llc_rows: Optional[list[dict]],
  bt,
  engine: workload.Engine,
  ref: dict,
  llc_key,
) -> dict:
  """Part 2: matmul FLOP/s, normal cost, and the split of one chain-step.

  ``llc_rows`` (part 1's rows, or None when it did not run) supply the
  sweep's own seconds per step for comparison.
  """
  batch, width, p = cfg.sgld.batch_size, cfg.width, cfg.p
  num_params = 3 * p * width
  chains = (
    max(1, llc.CPU_CHAINS_PER_CHUNK // cfg.sgld.num_chains)
    * cfg.sgld.num_chains
  )
  matmul = jax.jit(jnp.matmul)
  key = jax.random.key(0)
  out = {
    "flops_per_step": 14 * batch * width * p,
    "gather_form_flops_per_step": 6 * batch * width * p,
    "flops_note": "14*B*K*p executed by the one-hot form: forward x W^T "
    "and h^2 V^T, backward dV, dh and dW (elementwise work "
    "not counted); the gather form would need 6*B*K*p",
    "num_normals_per_step": num_params,
    "square": {},
    "model_shapes": {},
  }
  for n in cfg.matmul_sizes:
    a, b = (jax.random.normal(k, (n, n)) for k in jax.random.split(key))
    seconds = workload.median_seconds(matmul, a, b, repeats=cfg.repeats)
    out["square"][str(n)] = {
      "seconds": seconds,
      "gflops": 2 * n**3 / seconds / 1e9,
    }
  shapes = {
    "forward (B,2p)@(2p,K)": ((batch, 2 * p), (2 * p, width)),
    "forward (B,K)@(K,p)": ((batch, width), (width, p)),
    "backward dV (p,B)@(B,K)": ((p, batch), (batch, width)),
    "backward dh (B,p)@(p,K)": ((batch, p), (p, width)),
    "backward dW (2p,B)@(B,K)": ((2 * p, batch), (batch, width)),
  }
  step_matmul_seconds = {"single": 0.0, "batched": 0.0}
  for name, (sa, sb) in shapes.items():
    for mode, lead in (("single", ()), ("batched", (chains,))):
      a = jax.random.normal(key, lead + sa)
      b = jax.random.normal(jax.random.fold_in(key, 1), lead + sb)
      seconds = workload.median_seconds(matmul, a, b, repeats=cfg.repeats)
      flops = 2 * math.prod(sa) * sb[-1] * (chains if lead else 1)
      out["model_shapes"][f"{name} x{lead[0] if lead else 1}"] = {
        "seconds": seconds,
        "gflops": flops / seconds / 1e9,
      }
      step_matmul_seconds[mode] += seconds / (chains if lead else 1)
  square_peak = max(v["gflops"] for v in out["square"].values()) * 1e9
  model_peak = out["flops_per_step"] / step_matmul_seconds["batched"]
  out["square_peak_gflops"] = square_peak / 1e9
  out["model_shapes_gflops"] = {
    mode: out["flops_per_step"] / s / 1e9
    for mode, s in step_matmul_seconds.items()
  }
  # Noise drawn as the kernel draws it: sgld.gaussian_noise over the
  # parameter pytree, one chain or vmapped over a chunk's chains; and, for
  # comparison, one flat vector per chain.
  like = {"W": jnp.zeros((width, 2 * p)), "V": jnp.zeros((p, width))}
  flat = jnp.zeros((num_params,))
  keys = jax.random.split(jax.random.key(0), chains)
  normals = {}
  for impl in [i for i in NOISE_IMPLS if i != "zeros"]:
    per_normal = {}
    for name, tree, batched in (
      ("ns_per_normal", like, False),
      ("ns_per_normal_batched", like, True),
      ("ns_per_normal_flat_batched", flat, True),
    ):
      draw = lambda k, tree=tree, impl=impl: sgld.gaussian_noise(k, tree, impl)
      fn, arg = (jax.vmap(draw), keys) if batched else (draw, keys[0])
      seconds = workload.median_seconds(jax.jit(fn), arg, repeats=cfg.repeats)
      per_normal[name] = (
        seconds / ((chains if batched else 1) * num_params) * 1e9
      )
    normals[impl] = per_normal
  if bt is not None:
    normals["torch.randn"] = {
      "ns_per_normal": bt.normal_seconds(num_params, cfg.repeats)
      / num_params
      * 1e9
    }
  out["normals"] = normals
  ablation = _noise_ablation(cfg, engine, ref, llc_key)
  measured = ablation["with_noise"]
  noise = ablation["noise_in_situ"]
  matmul_at_model = out["flops_per_step"] / model_peak
  matmul_at_square = out["flops_per_step"] / square_peak
  out["step"] = {
    "measured_seconds": measured,
    "measured_note": "one CPU chunk, timed as is and without its noise "
    "(_noise_ablation)",
    "without_noise_seconds": ablation["without_noise"],
    "sweep_seconds_per_step": (
      1.0 / llc_rows[-1]["slt_jax"]["steps_per_second"] if llc_rows else None
    ),
    "sweep_C": llc_rows[-1]["C"] if llc_rows else None,
    "matmul_seconds_at_square_peak": matmul_at_square,
    "matmul_seconds_at_model_shape_peak": matmul_at_model,
    "noise_seconds": noise,
    "noise_seconds_drawn_alone": (
      normals[cfg.sgld.noise]["ns_per_normal_batched"] * 1e-9 * num_params
    ),
    "other_seconds": measured - matmul_at_model - noise,
    "achieved_model_gflops": out["flops_per_step"] / measured / 1e9,
    "achieved_gather_form_gflops": (
      out["gather_form_flops_per_step"] / measured / 1e9
    ),
    "fraction_of_roofline": (matmul_at_model + noise) / measured,
    "fraction_of_square_peak_roofline": (matmul_at_square + noise) / measured,
    "matmul_only_fraction_of_square_peak": matmul_at_square / measured,
  }
  s = out["step"]
  print(
    f"roofline: square peak {out['square_peak_gflops']:.0f} GFLOP/s, model "
    f"shapes {model_peak / 1e9:.0f}; {cfg.sgld.noise} "
    f"{normals[cfg.sgld.noise]['ns_per_normal_batched']:.1f} ns/normal "
    f"alone; step {1e3 * measured:.2f} ms = matmul "
    f"{1e3 * matmul_at_model:.2f} + noise in situ {1e3 * noise:.2f} + "
    f"other {1e3 * s['other_seconds']:.2f}; "
    f"{100 * s['fraction_of_roofline']:.0f}% of the roofline"
  )
  return out
