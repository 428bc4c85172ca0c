"""The blackjax 1.7 peer of ``experiments.bench``: what a JAX user writes.

A JAX user who wants the LLC at C checkpoints without slt_jax writes about
twenty lines with blackjax: ``blackjax.sgld`` with a gradient estimator for
``grad log pi_B(w) = -nβ grad L_B(w) - γ (w - w*)``, a ``lax.scan`` over steps
that draws a minibatch (epoch-wise shuffling: a permutation per epoch, as a
PyTorch ``DataLoader(shuffle=True, drop_last=True)`` gives), evaluates the
draw's loss on it (the loss before the move, as slt_jax and devinterp record
it) and takes one ``sgld.step``, vmapped over chains and checkpoints and
jitted once. That is ``llc_program`` below, with nothing tuned: default
JAX PRNG, the loss evaluated separately from the gradient (blackjax's kernel
takes a gradient function only), the noise drawn by blackjax over the
raveled parameters.

Conventions match slt_jax's: blackjax's SGLD step is ``w + h grad log pi +
sqrt(2 h) xi`` (temperature 1), so ``h = eps / 2`` gives devinterp's
``w - (eps/2) (nβ grad L_B + γ (w - w*)) + sqrt(eps) xi``; the estimate per
chain is ``nβ (mean_draws L_B - L_n(w*))``. blackjax's
``sgmcmc.gradients.grad_estimator`` is not used because it needs a
per-example log-likelihood, and the centered MSE is not a sum over examples.

The minibatch scheme matters at the bench's precision: drawing each batch
independently (``jax.random.choice(key, n, (B,), replace=False)`` per step)
changes the gradient noise, and on the reference workload (C = 10, 3 chains)
gave estimates 0.6% below slt_jax's (-31.6 on ~4900, about 10 standard
errors pooled over 61 checkpoints), while epoch-wise shuffling agrees
(-5.9 ± 8.0 at C = 10); the per-step cost is the same.

Needs blackjax (the ``bench`` extra); ``llc.import_blackjax`` imports this
module only when blackjax is importable.
"""

from __future__ import annotations

import time
from typing import Callable

import blackjax
import jax
import jax.numpy as jnp
import numpy as np


def llc_program(
  loss_fn: Callable,
  data,
  *,
  step_size: float,
  nbeta: float,
  localization: float,
  num_chains: int,
  num_draws: int,
  num_burnin: int,
  batch_size: int,
) -> Callable:
  """``llc(key, checkpoints) -> (C, chains)`` per-chain LLCs, jitted.

  ``checkpoints`` carries a leading axis of C points; chain j of checkpoint
  i uses ``split(split(key, C)[i], chains)[j]``.
  """
  data = jax.tree.map(jnp.asarray, data)
  n = jax.tree.leaves(data)[0].shape[0]

  def one_chain(key, w_star):
    def logdensity(w, batch):
      sq = sum(
        jnp.sum((a - b) ** 2)
        for a, b in zip(jax.tree.leaves(w), jax.tree.leaves(w_star))
      )
      return -nbeta * loss_fn(w, batch) - 0.5 * localization * sq

    sgld = blackjax.sgld(jax.grad(logdensity))

    key_perm, key_steps = jax.random.split(key)
    per_epoch = n // batch_size

    def step(w, t):
      perm = jax.random.permutation(
        jax.random.fold_in(key_perm, t // per_epoch), n
      )
      idx = jax.lax.dynamic_slice(
        perm, ((t % per_epoch) * batch_size,), (batch_size,)
      )
      batch = jax.tree.map(lambda x: x[idx], data)
      loss = loss_fn(w, batch)
      key_step = jax.random.fold_in(key_steps, t)
      return sgld.step(key_step, w, batch, 0.5 * step_size), loss

    _, trace = jax.lax.scan(
      step, sgld.init(w_star), jnp.arange(num_burnin + num_draws)
    )
    return nbeta * (jnp.mean(trace[num_burnin:]) - loss_fn(w_star, data))

  def llc(key, checkpoints):
    count = jax.tree.leaves(checkpoints)[0].shape[0]
    keys = jax.vmap(lambda k: jax.random.split(k, num_chains))(
      jax.random.split(key, count)
    )
    return jax.vmap(jax.vmap(one_chain, (0, None)))(keys, checkpoints)

  return jax.jit(llc)


def timed_llc(loss_fn: Callable, data, checkpoints, key, **sgld) -> dict:
  """Compiles ``llc_program`` for ``checkpoints`` and times one run of it.

  Returns:
    ``{"per_chain": (C, chains) list, "seconds", "compile_seconds",
    "chain_steps", "steps_per_second", "blackjax": version}``.
  """
  start = time.perf_counter()
  compiled = (
    llc_program(loss_fn, data, **sgld).lower(key, checkpoints).compile()
  )
  compile_seconds = time.perf_counter() - start
  start = time.perf_counter()
  per_chain = np.asarray(jax.block_until_ready(compiled(key, checkpoints)))
  seconds = time.perf_counter() - start
  steps = per_chain.size * (sgld["num_burnin"] + sgld["num_draws"])
  return {
    "per_chain": per_chain.tolist(),
    "seconds": seconds,
    "compile_seconds": compile_seconds,
    "chain_steps": steps,
    "steps_per_second": steps / seconds,
    "blackjax": blackjax.__version__,
  }
