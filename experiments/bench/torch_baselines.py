"""PyTorch baselines for ``experiments.bench`` (needs the ``bench`` extra).

The quadratic network as PyTorch users write it (two ``nn.Linear`` without
bias on one-hot inputs), the centered MSE, localized SGLD through devinterp
1.3.2's ``estimate_learning_coeff_with_summary``, the same SGLD as a plain
eager loop over chains, and a plain Adam training loop. Everything runs
single-process on the CPU. Importing this module imports torch; devinterp is
imported only by ``devinterp_llc``.

The SGLD update is the reproduction's (devinterp's convention):
``w <- w - (eps/2) [nbeta grad L_B(w) + gamma (w - w*)] + sqrt(eps) xi``; the
loss recorded for a draw is the minibatch loss before the move, and the
estimate per chain is ``nbeta (mean_draws L_B - L_n(w*))``.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Optional

import numpy as np
import torch
from torch import nn


class QuadraticNet(nn.Module):
  """``f(x) = V (W x)^2`` without biases on one-hot inputs ``x = [e_a; e_b]``.

  Attributes:
    embed: ``nn.Linear(2p, K)``; its weight is slt_jax's ``W`` (K, 2p).
    unembed: ``nn.Linear(K, p)``; its weight is slt_jax's ``V`` (p, K).
  """

  def __init__(self, p: int, width: int):
    super().__init__()
    self.embed = nn.Linear(2 * p, width, bias=False)
    self.unembed = nn.Linear(width, p, bias=False)

  def forward(self, x_BxD: torch.Tensor) -> torch.Tensor:
    return self.unembed(torch.square(self.embed(x_BxD)))


def make_model(w_KxD: np.ndarray, v_PxK: np.ndarray) -> QuadraticNet:
  """A QuadraticNet holding copies of slt_jax's ``W`` and ``V``."""
  net = QuadraticNet(v_PxK.shape[0], v_PxK.shape[1])
  load_weights(net, w_KxD, v_PxK)
  return net


def load_weights(
  net: QuadraticNet, w_KxD: np.ndarray, v_PxK: np.ndarray
) -> None:
  """Copies slt_jax's ``W`` and ``V`` into ``net`` in place."""
  with torch.no_grad():
    net.embed.weight.copy_(torch.tensor(np.array(w_KxD, np.float32)))
    net.unembed.weight.copy_(torch.tensor(np.array(v_PxK, np.float32)))


def one_hot_data(
  pairs_Nx2: np.ndarray, labels_N: np.ndarray, p: int
) -> tuple[torch.Tensor, torch.Tensor]:
  """One-hot inputs (N, 2p) and targets (N, p), float32."""
  pairs = torch.tensor(np.array(pairs_Nx2, np.int64))
  labels = torch.tensor(np.array(labels_N, np.int64))
  x_NxD = torch.cat(
    [
      nn.functional.one_hot(pairs[:, 0], p),
      nn.functional.one_hot(pairs[:, 1], p),
    ],
    dim=1,
  )
  return x_NxD.float(), nn.functional.one_hot(labels, p).float()


def centered_mse(y_BxP: torch.Tensor, yhat_BxP: torch.Tensor) -> torch.Tensor:
  """``0.5 ||R - mean_rows(R)||_F^2 / B`` with ``R = Y - Yhat``."""
  r_BxP = y_BxP - yhat_BxP
  centered_BxP = r_BxP - r_BxP.mean(dim=0)
  return 0.5 * torch.sum(torch.square(centered_BxP)) / r_BxP.shape[0]


def evaluate(net: nn.Module, batch) -> torch.Tensor:
  """devinterp's ``evaluate(model, batch) -> loss`` for the centered MSE."""
  x_BxD, y_BxP = batch
  return centered_mse(y_BxP, net(x_BxD))


def full_loss(
  net: nn.Module, x_NxD: torch.Tensor, y_NxP: torch.Tensor
) -> float:
  """L_n(w) on the whole set."""
  with torch.no_grad():
    return float(centered_mse(y_NxP, net(x_NxD)))


def devinterp_llc(
  net: nn.Module,
  x_NxD: torch.Tensor,
  y_NxP: torch.Tensor,
  *,
  step_size: float,
  nbeta: float,
  localization: float,
  num_chains: int,
  num_draws: int,
  num_burnin: int,
  batch_size: int,
  seed: int,
) -> dict:
  """One point's LLC with devinterp's ``estimate_learning_coeff_with_summary``.

  Conventions are matched to slt_jax's: ``nbeta`` is passed explicitly
  (devinterp would otherwise use ``B / ln B`` of the loader, the same number
  here), ``init_loss`` is L_n(w*) on the whole training set (devinterp's
  default averages ``num_chains`` minibatches), and the loader drops the last
  partial batch, as slt_jax's epoch batching does.

  Args:
    net: the model at w* (devinterp copies it per chain).
    x_NxD, y_NxP: one-hot training inputs and targets.
    step_size, nbeta, localization: SGLD's eps, n·beta and gamma.
    num_chains, num_draws, num_burnin: chain budget.
    batch_size: minibatch size.
    seed: devinterp's seed (chain i gets a seed derived from it, which also
      drives that chain's shuffling through torch's global generator).

  Returns:
    ``{"per_chain": [...], "init_loss": float, "seconds": float}``.
  """
  from devinterp.slt.sampler import estimate_learning_coeff_with_summary

  loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(x_NxD, y_NxP),
    batch_size=batch_size,
    shuffle=True,
    drop_last=True,
  )
  init_loss = full_loss(net, x_NxD, y_NxP)
  start = time.perf_counter()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    out = estimate_learning_coeff_with_summary(
      net,
      loader,
      evaluate=evaluate,
      optimizer_kwargs={
        "lr": step_size,
        "nbeta": nbeta,
        "localization": localization,
      },
      num_draws=num_draws,
      num_chains=num_chains,
      num_burnin_steps=num_burnin,
      init_loss=init_loss,
      seed=seed,
      device="cpu",
      verbose=False,
    )
  seconds = time.perf_counter() - start
  return {
    "per_chain": [out[f"llc-chain/{i}"] for i in range(num_chains)],
    "init_loss": init_loss,
    "seconds": seconds,
  }


def plain_llc(
  net: nn.Module,
  x_NxD: torch.Tensor,
  y_NxP: torch.Tensor,
  *,
  step_size: float,
  nbeta: float,
  localization: float,
  num_chains: int,
  num_draws: int,
  num_burnin: int,
  batch_size: int,
  seed: int,
) -> dict:
  """The same estimate as a plain eager loop over chains (no devinterp).

  Minibatches are epoch-wise shuffled without replacement (last partial batch
  dropped); gradients come from ``torch.autograd.grad``. Arguments and return
  value as ``devinterp_llc``.
  """
  gen = torch.Generator().manual_seed(seed)
  n = x_NxD.shape[0]
  steps_per_epoch = max(n // batch_size, 1)
  anchors = [p.detach().clone() for p in net.parameters()]
  init_loss = full_loss(net, x_NxD, y_NxP)
  noise_scale = math.sqrt(step_size)
  per_chain = []
  start = time.perf_counter()
  for _ in range(num_chains):
    params = [a.clone().requires_grad_(True) for a in anchors]
    w_KxD, v_PxK = params
    draws = []
    perm = None
    for t in range(num_burnin + num_draws):
      if t % steps_per_epoch == 0:
        perm = torch.randperm(n, generator=gen)
      idx = perm[
        (t % steps_per_epoch) * batch_size : (t % steps_per_epoch + 1)
        * batch_size
      ]
      out_BxP = torch.square(x_NxD[idx] @ w_KxD.T) @ v_PxK.T
      loss = centered_mse(y_NxP[idx], out_BxP)
      grads = torch.autograd.grad(loss, params)
      with torch.no_grad():
        for param, grad, anchor in zip(params, grads, anchors):
          drift = nbeta * grad + localization * (param - anchor)
          param.add_(drift, alpha=-0.5 * step_size)
          param.add_(torch.randn(param.shape, generator=gen), alpha=noise_scale)
      if t >= num_burnin:
        draws.append(loss.detach())
    per_chain.append(nbeta * (float(torch.stack(draws).mean()) - init_loss))
  return {
    "per_chain": per_chain,
    "init_loss": init_loss,
    "seconds": time.perf_counter() - start,
  }


def thread_check(
  net: nn.Module,
  x_NxD: torch.Tensor,
  y_NxP: torch.Tensor,
  threads: tuple[int, ...],
  num_steps: int,
  **sgld_kwargs,
) -> dict:
  """Plain-loop SGLD steps/s at each torch thread count (one short chain).

  On a shared machine, OpenMP threads that wait for a busy core can make two
  threads much slower than one; this records whether that happened. The
  thread count in force before the call is restored.
  """
  before = torch.get_num_threads()
  rates = {}
  try:
    for count in threads:
      torch.set_num_threads(count)
      out = plain_llc(
        net,
        x_NxD,
        y_NxP,
        num_chains=1,
        num_draws=num_steps,
        num_burnin=0,
        seed=0,
        **sgld_kwargs,
      )
      rates[str(count)] = num_steps / out["seconds"]
  finally:
    torch.set_num_threads(before)
  return rates


def train_steps_per_second(
  w_KxD: np.ndarray,
  v_PxK: np.ndarray,
  x_NxD: torch.Tensor,
  y_NxP: torch.Tensor,
  *,
  lr: float,
  weight_decay: float,
  batch_size: int,
  num_steps: int,
  warmup_steps: int = 10,
  seed: int = 0,
) -> float:
  """Optimisation steps per second of a plain Adam loop (coupled L2).

  ``torch.optim.Adam(weight_decay=...)`` adds ``wd * w`` to the gradient, as
  slt_jax's ``adam`` chain does. The first ``warmup_steps`` are not timed.
  """
  net = make_model(w_KxD, v_PxK)
  opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
  gen = torch.Generator().manual_seed(seed)
  n = x_NxD.shape[0]
  steps_per_epoch = max(n // batch_size, 1)
  perm: Optional[torch.Tensor] = None
  start = time.perf_counter()
  for t in range(warmup_steps + num_steps):
    if t == warmup_steps:
      start = time.perf_counter()
    if t % steps_per_epoch == 0:
      perm = torch.randperm(n, generator=gen)
    idx = perm[
      (t % steps_per_epoch) * batch_size : (t % steps_per_epoch + 1)
      * batch_size
    ]
    loss = centered_mse(y_NxP[idx], net(x_NxD[idx]))
    opt.zero_grad()
    loss.backward()
    opt.step()
  return num_steps / (time.perf_counter() - start)


def normal_seconds(num: int, repeats: int = 20) -> float:
  """Median seconds of ``torch.randn(num)`` (CPU generator), for context."""
  gen = torch.Generator().manual_seed(0)
  times = []
  for _ in range(repeats + 2):
    start = time.perf_counter()
    torch.randn(num, generator=gen)
    times.append(time.perf_counter() - start)
  return float(np.median(times[2:]))
