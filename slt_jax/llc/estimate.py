"""``estimate_llc``: the LLC at every point of a pytree, in one call.

Any ``loss_fn(params, batch) -> scalar`` and a pytree of parameters whose
leaves carry ``batch_ndim`` leading axes (e.g. seeds × checkpoints). Each
point gets ``num_chains`` localized chains (``sgld``, ``rmsprop_sgld``,
``sghmc``, ``sgnht`` or full-batch ``mala``); the estimate per chain is
``nbeta (mean_draws L_B(w) - L_n(w*))`` (devinterp's estimator).

The sampler's eps, nβ and γ are traced (``SGLDSettings``), so a grid of
settings (a robustness panel, a calibration, an nβ × γ study) runs in the
same compiled program as one setting; every setting reuses the points' keys
(common random numbers). ``estimate_llc`` is a thin call of
``compile_sweep(...).run(...)`` (``slt_jax.llc.sweep``).
"""

from __future__ import annotations

from typing import Callable, Optional, Union

from slt_jax.llc.arguments import count_examples, resolve_settings
from slt_jax.llc.config import SGLDConfig
from slt_jax.llc.result import LLCResult
from slt_jax.llc.sweep import compile_sweep
from slt_jax.samplers.sgld import SGLDSettings
from slt_jax.tree_types import ArrayLikeTree, PRNGKey

__all__ = ["estimate_llc"]


def estimate_llc(
  key: PRNGKey,
  loss_fn: Callable,
  params: ArrayLikeTree,
  data: ArrayLikeTree,
  cfg: SGLDConfig,
  batch_ndim: int = 0,
  *,
  settings: Optional[SGLDSettings] = None,
  mask: Union[None, ArrayLikeTree, Callable] = None,
  num_examples: Optional[int] = None,
  out_path: Optional[str] = None,
  progress: bool = True,
  warn: bool = True,
  observables: Optional[dict] = None,
  observe_every: int = 1,
  per_example_loss_fn: Optional[Callable] = None,
  observe_batch_size: Optional[int] = None,
) -> LLCResult:
  """Estimates the local learning coefficient at every point of ``params``.

  A thin call of ``compile_sweep(...).run(...)``; hold the ``Sweep`` instead
  to reuse its compiled program across calls.

  With ``observables={name: data set}``, each chain also records the
  per-example losses ``per_example_loss_fn(w, set)`` of every set at draws 0,
  k, 2k, ... (k = ``observe_every``), inside the compiled chain; they come
  back as ``res.observables[name]``, shaped ``(..., chains, draws // k,
  n_name)``, with the same at w* in ``res.init_observables``
  (``slt_jax.llc.influence`` turns them into influence functions and
  susceptibilities). They cost ``points × chains × draws/k × sum(n)`` floats
  of output (counted by the accelerator chunk sizing) and one forward pass
  over every set per observation; the chains and every other number are
  those of the same run without observables, and without them the program
  is unchanged.

  Args:
    key: PRNG key, ``jax.random.key(seed)`` (a legacy
      ``jax.random.PRNGKey(seed)`` gives the same numbers); point i uses
      ``split(key, P)[i]`` whatever the chunking.
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss over a batch.
    params: pytree whose leaves carry ``batch_ndim`` leading axes of points.
    data: pytree of arrays with the example axis first (n = its length).
    cfg: SGLDConfig.
    batch_ndim: number of leading point axes of ``params``.
    settings: optional ``SGLDSettings`` grid (see ``Sweep.run``): results get
      a leading settings axis, all in one compiled program.
    mask: which parameters move (see ``resolve_mask``); others stay at w*.
    num_examples: n to use in place of the data length.
    out_path: folder of saved chunks for resuming (see ``Sweep.run``).
    progress: show a tqdm bar over chunks.
    warn: warn about diverged or stuck chains, non-stationary points and a
      noiseless run (``cfg.noise="zeros"``).
    observables: None, or ``{name: data set}`` (each a pytree with the
      example axis first, like ``data``) whose per-example losses to record.
    observe_every: k >= 1 dividing ``cfg.num_draws``.
    per_example_loss_fn: ``fn(params, batch) -> (batch,)`` losses, required
      with ``observables`` (e.g. ``slt_jax.grokking.losses.make_per_example_loss``).
    observe_batch_size: evaluate each set in chunks of this many examples
      (bounds the forward pass's memory; None: a set in one call, as
      ``centered_mse``'s per-example form needs).

  Returns:
    LLCResult; diverged and stuck chains (``LLCResult.stuck``) are excluded
    from ``mean``/``std``.

  Raises:
    TypeError: if ``key`` is not a PRNG key.
    ValueError: naming a bad argument or settings value.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> loss = lambda w, batch: 0.5 * jnp.mean(jnp.sum((batch - w[None]) ** 2, -1))
    >>> data = jnp.zeros((100, 2))
    >>> cfg = SGLDConfig(step_size=1e-3, nbeta=100.0, localization=1.0,
    ...                  num_chains=2, num_draws=50, num_burnin=10, batch_size=None)
    >>> res = estimate_llc(jax.random.key(0), loss, jnp.zeros(2), data, cfg,
    ...                    progress=False, warn=False)
    >>> res.per_chain.shape, res.loss_trace.shape
    ((2,), (2, 50))
  """
  num_settings = 1
  if settings is not None:
    n = count_examples(data, num_examples)
    num_settings = len(resolve_settings(cfg, settings, n)[0].step_size)
  sweep = compile_sweep(
    loss_fn,
    cfg,
    data,
    params,
    batch_ndim,
    mask=mask,
    num_examples=num_examples,
    num_settings=num_settings,
    observables=observables,
    observe_every=observe_every,
    per_example_loss_fn=per_example_loss_fn,
    observe_batch_size=observe_batch_size,
  )
  return sweep.run(
    key,
    params,
    batch_ndim,
    settings=settings,
    out_path=out_path,
    progress=progress,
    warn=warn,
  )
