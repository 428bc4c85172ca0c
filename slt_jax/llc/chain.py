"""The chain program: all chains at one point under one setting, traced once.

A chain is a ``lax.scan`` over ``take_step``: draw the step's minibatch, call
the sampler's kernel, keep what the step's role needs. Steps run in blocks of
``SGLDConfig.mala_every`` aligned on multiples of it; ``step_role`` names each
step's part in the acceptance proxy: the last step of a block is a
``"proxy"`` step (it reports the proxy), the one before it ``"record"`` (its
move is recorded for that proxy), the others ``"plain"`` (neither). The
chain is the same whatever the roles (``keep_for_role``); plain steps run as
one scan, the others one by one (``run_segment``), and whole blocks as a scan
of segments (``run_steps``).

With observables, the per-example losses of every set are recorded at draws
0, k, 2k, ... (k = ``ObservablesSpec.every``): the draws run as scanned
super-blocks of lcm(k, mala_every) steps, k-step segments each opened by an
observation (``run_observed``), so the chain, its proxy steps and every
number it returns are those of the same run without observables.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from slt_jax import batching
from slt_jax.llc.arguments import ObservablesSpec
from slt_jax.llc.config import SGLDConfig
from slt_jax.llc.registry import ChainSampler, chain_sampler
from slt_jax.samplers.sgld import SGLDSettings
from slt_jax.tree_types import ArrayTree, PRNGKey

__all__ = [
  "NOISE_BATCHES",
  "ROLES",
  "keep_for_role",
  "minibatch_loss_std",
  "per_example_losses",
  "point_program",
  "step_role",
]

ROLES = ("plain", "record", "proxy")

# Minibatches at w* whose losses estimate the minibatch noise of the loss
# (the divergence rule's allowance): a relative error of about 1/sqrt(2 x 32).
NOISE_BATCHES = 32
# Blocks of a chain's draws for the batch-means error of a covariance.
COV_BLOCKS = 10
# covariance_blocks' entries of the loss and ||w - w*||^2 -> their names
# among a work item's outputs.
COVARIANCE_OUTPUTS = {k: f"loss_distance/{k}" for k in ("cov", "xy", "x", "y")}


def step_role(step: int, every: int) -> str:
  """The role (a ``ROLES`` entry) of static step number ``step`` in blocks of
  ``every``: ``"proxy"`` closes a block, ``"record"`` precedes it.

  Example:
    >>> [step_role(t, 4) for t in range(5)]
    ['plain', 'plain', 'record', 'proxy', 'plain']
  """
  residue = step % every
  if residue == every - 1:
    return "proxy"
  return "record" if residue == every - 2 else "plain"


def keep_for_role(
  role: str, sampler: ChainSampler, state, new_state, info
) -> tuple:
  """What a step of ``role`` keeps of its kernel's output ``(new_state,
  info)`` from ``state``.

  Only a ``"proxy"`` step reports the acceptance proxy (others: nan), and a
  ``"plain"`` step keeps ``state``'s record of the last move (the
  ``sampler.move_record`` fields); the chain's position is the kernel's
  either way. The discarded work is dead code, which XLA removes. A sampler
  with no move record (MALA: its acceptance is exact) keeps everything.

  Returns:
    (new_state, info) as the step keeps them.
  """
  if not sampler.move_record:
    return new_state, info
  if role != "proxy":
    nan = jnp.full((), jnp.nan, info.mala_accept.dtype)
    info = info._replace(mala_accept=nan)
  if role == "plain":
    kept = {name: getattr(state, name) for name in sampler.move_record}
    new_state = new_state._replace(**kept)
  return new_state, info


class Chain(NamedTuple):
  """One chain: the static program and its traced inputs.

  Attributes:
    sampler: the ``ChainSampler``.
    batch_size: minibatch size, or None for the full data on every step.
    num_examples: the data's length (the minibatches' permutation range).
    every: ``SGLDConfig.mala_every``, the block length of the step roles.
    key_batches: the key of the chain's minibatch order.
    key_steps: the key of its steps (step t folds in t).
    settings: ``SGLDSettings`` of scalars.
    data: the data set.
  """

  sampler: ChainSampler
  batch_size: Optional[int]
  num_examples: int
  every: int
  key_batches: PRNGKey
  key_steps: PRNGKey
  settings: SGLDSettings
  data: ArrayTree


def _concat(parts: list):
  """The per-step pytrees of ``parts`` joined along the step axis."""
  if len(parts) == 1:
    return parts[0]
  return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)


def _merge_blocks(tree):
  """Leaves (blocks, per block, ...) reshaped to (blocks * per block, ...)."""
  return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


def take_step(chain: Chain, carry: tuple, t, role: str) -> tuple:
  """Step ``t`` (traced) of ``role``: ``((state, perm), info)``."""
  state, perm = carry
  if chain.batch_size is None:
    batch = chain.data
  else:
    perm, idx = batching.next_batch(
      chain.key_batches, perm, t, chain.num_examples, chain.batch_size
    )
    batch = batching.take(chain.data, idx)
  new_state, info = chain.sampler.kernel(
    jax.random.fold_in(chain.key_steps, t), state, batch, chain.settings
  )
  new_state, info = keep_for_role(role, chain.sampler, state, new_state, info)
  return (new_state, perm), info


def run_segment(chain: Chain, carry: tuple, ts, first: int) -> tuple:
  """Steps ``ts`` (1-D, possibly traced), the first congruent to ``first``
  mod ``chain.every``: runs of plain steps scanned, the others one by one.

  Returns:
    (carry, per-step infos stacked).
  """
  roles = [step_role(first + i, chain.every) for i in range(ts.shape[0])]
  parts, i = [], 0
  while i < len(roles):
    j = i + 1
    if roles[i] == "plain":
      while j < len(roles) and roles[j] == "plain":
        j += 1
      carry, infos = jax.lax.scan(
        lambda c, t: take_step(chain, c, t, "plain"), carry, ts[i:j]
      )
    else:
      carry, info = take_step(chain, carry, ts[i], roles[i])
      infos = jax.tree.map(lambda x: x[None], info)
    parts.append(infos)
    i = j
  return carry, _concat(parts)


def run_steps(chain: Chain, carry: tuple, start: int, stop: int, base=None):
  """Steps ``base + t`` for t in [start, stop) (static; ``base`` a traced
  multiple of ``chain.every``, or None for 0): the end of a block begun
  before ``start``, a scan over whole blocks, then the rest.

  Returns:
    (carry, per-step infos stacked, or None for no step).
  """
  every = chain.every
  at = (lambda ts: ts) if base is None else (lambda ts: ts + base)
  parts = []
  first = min(-(-start // every) * every, stop)  # first aligned step.
  if first > start:
    carry, infos = run_segment(
      chain, carry, at(jnp.arange(start, first)), start
    )
    parts.append(infos)
  num_blocks = (stop - first) // every
  end = first + num_blocks * every
  if num_blocks:
    blocks_ts = jnp.arange(first, end).reshape(num_blocks, every)
    carry, blocks = jax.lax.scan(
      lambda c, ts: run_segment(chain, c, ts, 0), carry, at(blocks_ts)
    )
    parts.append(_merge_blocks(blocks))
  if stop > end:
    carry, rest = run_segment(chain, carry, at(jnp.arange(end, stop)), 0)
    parts.append(rest)
  return carry, (_concat(parts) if parts else None)


def per_example_losses(
  fn: Callable, params: ArrayTree, batch: ArrayTree, chunk: Optional[int]
) -> jax.Array:
  """``fn(params, batch)`` over the whole set, in chunks of ``chunk`` examples
  (the last one padded by repeating the last example) when the set is larger.

  Example:
    >>> fn = lambda w, x: (x - w) ** 2
    >>> per_example_losses(fn, 1.0, jnp.arange(5.0), 2).tolist()
    [1.0, 0.0, 1.0, 4.0, 9.0]
  """
  n = jax.tree.leaves(batch)[0].shape[0]
  if chunk is None or chunk >= n:
    return fn(params, batch)
  num = -(-n // chunk)
  idx = jnp.minimum(jnp.arange(num * chunk), n - 1).reshape(num, chunk)
  out = jax.lax.map(lambda i: fn(params, batching.take(batch, i)), idx)
  return out.reshape(-1)[:n]


def observe_then_run(
  chain: Chain, spec: ObservablesSpec, sets: dict, carry, start: int, base
):
  """Observes the current draw, then runs the ``spec.every`` steps from
  ``start`` (``base`` as in ``run_steps``).

  Returns:
    (carry, (infos, {name: (n_name,) losses})).
  """
  seen = {
    name: per_example_losses(
      spec.per_example_loss_fn, carry[0].position, sets[name], spec.batch_size
    )
    for name in spec.names
  }
  carry, info = run_steps(chain, carry, start, start + spec.every, base)
  return carry, (info, seen)


def _super_block(chain, spec, sets, num_burnin: int, per: int, carry, base):
  """``per`` observed k-step segments from draw ``base`` (k = spec.every)."""
  outs = []
  for r in range(per):
    start = num_burnin + r * spec.every
    carry, out = observe_then_run(chain, spec, sets, carry, start, base)
    outs.append(out)
  infos = _concat([info for info, _ in outs])
  seen = jax.tree.map(lambda *xs: jnp.stack(xs), *[seen for _, seen in outs])
  return carry, (infos, seen)


def run_observed(
  chain: Chain, cfg: SGLDConfig, spec: ObservablesSpec, sets: dict, carry
):
  """The burn-in, then the draws as observed k-step segments (k =
  ``spec.every``), scanned in super-blocks of lcm(k, mala_every) steps.

  Returns:
    (carry, per-step infos, {name: (draws // k, n_name) losses}).
  """
  k = spec.every
  per = math.lcm(k, chain.every) // k  # observations per super-block.
  num_obs = cfg.num_draws // k
  num_super = num_obs // per
  carry, burnin = run_steps(burnin_chain(chain, cfg), carry, 0, cfg.num_burnin)
  infos, seens = ([] if burnin is None else [burnin]), []
  if num_super:
    block = lambda c, base: _super_block(
      chain, spec, sets, cfg.num_burnin, per, c, base
    )
    bases = jnp.arange(num_super, dtype=jnp.int32) * per * k
    carry, (info, seen) = jax.lax.scan(block, carry, bases)
    infos.append(_merge_blocks(info))
    seens.append(_merge_blocks(seen))
  for r in range(num_obs % per):
    start = cfg.num_burnin + (num_super * per + r) * k
    carry, (info, seen) = observe_then_run(
      chain, spec, sets, carry, start, None
    )
    infos.append(info)
    seens.append(jax.tree.map(lambda x: x[None], seen))
  return carry, _concat(infos), _concat(seens)


def burnin_chain(chain: Chain, cfg: SGLDConfig) -> Chain:
  """``chain`` with ``cfg.burnin_step_size`` as its step size (unchanged
  when that is None): the chain of the burn-in steps."""
  if cfg.burnin_step_size is None:
    return chain
  eps = jnp.asarray(
    cfg.burnin_step_size, jnp.result_type(chain.settings.step_size)
  )
  return chain._replace(settings=chain.settings._replace(step_size=eps))


def run_burnin_then_draws(chain: Chain, cfg: SGLDConfig, carry) -> tuple:
  """The burn-in (at ``cfg.burnin_step_size`` when set), then the draws.

  Returns:
    (carry, per-step infos of all ``num_burnin + num_draws`` steps).
  """
  num_steps = cfg.num_burnin + cfg.num_draws
  if cfg.burnin_step_size is None:
    return run_steps(chain, carry, 0, num_steps)
  carry, burnin = run_steps(burnin_chain(chain, cfg), carry, 0, cfg.num_burnin)
  carry, info = run_steps(chain, carry, cfg.num_burnin, num_steps)
  return carry, (info if burnin is None else _concat([burnin, info]))


def run_chain(
  sampler: ChainSampler,
  cfg: SGLDConfig,
  num_examples: int,
  spec: Optional[ObservablesSpec],
  key: PRNGKey,
  anchor: ArrayTree,
  settings: SGLDSettings,
  data: ArrayTree,
  sets: Optional[dict],
) -> tuple:
  """One chain from ``anchor``.

  Returns:
    (draws' losses (num_draws,), mean acceptance proxy over the draws, mean
    ``||w - w*||^2`` over the draws, the sampler's ``step_scale`` at the
    end (nan without one), ``covariance_blocks(loss, ||w - w*||^2)``,
    observed losses or None).
  """
  key_batches, key_steps = jax.random.split(key)
  full_batch = cfg.batch_size is None or sampler.full_batch
  batch_size = None if full_batch else cfg.batch_size
  chain = Chain(
    sampler,
    batch_size,
    num_examples,
    cfg.mala_every,
    key_batches,
    key_steps,
    settings,
    data,
  )
  perm = (
    None
    if full_batch
    else batching.first_permutation(
      key_batches, 0, num_examples, batch_size, num_examples
    )
  )
  carry = (sampler.init(anchor, data), perm)
  if spec is None:
    carry, info = run_burnin_then_draws(chain, cfg, carry)
    seen = None
  else:
    carry, info, seen = run_observed(chain, cfg, spec, sets, carry)
  draws = slice(cfg.num_burnin, None)
  loss, distance_sq = info.loss[draws], info.distance_sq[draws]
  scale = sampler.step_scale
  return (
    loss,
    jnp.nanmean(info.mala_accept[draws]),
    jnp.mean(distance_sq),
    jnp.nan if scale is None else scale(carry[0]),
    covariance_blocks(loss, distance_sq),
    seen,
  )


def covariance_blocks(x_T: jax.Array, y_T: jax.Array) -> dict:
  """A chain's covariance of x and y, and the block means behind its error.

  Args:
    x_T, y_T: (draws,) two traces of one chain.

  Returns:
    ``cov`` (): the mean of ``(x - mean x)(y - mean y)`` over all T draws;
    ``xy``, ``x``, ``y`` (blocks,): the means of that product and of the
    centred ``x`` and ``y`` over ``min(COV_BLOCKS, T)`` consecutive blocks
    of ``T // blocks`` draws (the remainder left out of the blocks only).

  Example:
    >>> out = covariance_blocks(jnp.arange(20.0), jnp.arange(20.0))
    >>> float(out["cov"]), out["xy"].shape, float(out["x"][0])
    (33.25, (10,), -9.0)
  """
  blocks = min(COV_BLOCKS, x_T.shape[0])
  size = x_T.shape[0] // blocks
  in_blocks = lambda z: z[: blocks * size].reshape(blocks, size).mean(axis=1)
  x_T, y_T = x_T - x_T.mean(), y_T - y_T.mean()
  return {
    "cov": jnp.mean(x_T * y_T),
    "xy": in_blocks(x_T * y_T),
    "x": in_blocks(x_T),
    "y": in_blocks(y_T),
  }


def minibatch_loss_std(
  loss_fn: Callable,
  params: ArrayTree,
  data: ArrayTree,
  key: PRNGKey,
  num_examples: int,
  batch_size: int,
) -> jax.Array:
  """Standard deviation of ``loss_fn(params, B)`` over ``NOISE_BATCHES``
  minibatches B of ``batch_size`` examples, each drawn without replacement
  from the ``num_examples`` of ``data`` (evaluated one after the other).

  Example:
    >>> loss = lambda w, batch: jnp.mean(batch)
    >>> data = jnp.arange(10.0)
    >>> float(minibatch_loss_std(loss, 0.0, data, jax.random.key(0), 10, 10))
    0.0
  """

  def batch_loss(batch_key):
    idx = jax.random.permutation(batch_key, num_examples)[:batch_size]
    return loss_fn(params, batching.take(data, idx))

  losses = jax.lax.map(batch_loss, jax.random.split(key, NOISE_BATCHES))
  return jnp.std(losses, ddof=1)


def point_program(
  loss_fn: Callable,
  cfg: SGLDConfig,
  num_examples: int,
  mask: Optional[ArrayTree],
  spec: Optional[ObservablesSpec] = None,
) -> Callable:
  """The program of one work item: all ``cfg.num_chains`` chains at one point
  under one setting.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    cfg: the sweep's configuration (its ``sampler`` from
      ``slt_jax.llc.registry``).
    num_examples: the data's length.
    mask: the resolved mask (see ``resolve_mask``), or None.
    spec: the observables to record, or None.

  Returns:
    ``run_point(key, anchor, settings, data) -> dict`` of ``init_loss`` (),
    ``init_batch_loss_std`` () (``minibatch_loss_std`` at the anchor with
    the chains' minibatch size; 0 for full-batch chains), ``loss_trace``
    (chains, draws), ``mala_accept`` (chains,),
    ``distance_sq`` (chains,), ``step_scale`` (chains,) (the sampler's
    ``step_scale`` at the last step; nan without one),
    ``loss_distance/cov`` (chains,) and
    ``loss_distance/xy``, ``/x``, ``/y`` (chains, blocks):
    ``covariance_blocks`` of the loss and ``||w - w*||^2``, and, with
    ``spec``, ``observables/NAME``
    (chains, draws // k, n_NAME) and ``init_observables/NAME`` (n_NAME,);
    ``data`` is then ``(data, {name: set})``.

  Example:
    >>> loss = lambda w, batch: 0.5 * jnp.sum(w ** 2)
    >>> cfg = SGLDConfig(num_chains=2, num_draws=4, num_burnin=1, batch_size=None)
    >>> run_point = point_program(loss, cfg, 3, None)
    >>> out = run_point(jax.random.key(0), jnp.zeros(2),
    ...                 SGLDSettings(1e-3, 10.0, 1.0), jnp.zeros((3, 1)))
    >>> out["loss_trace"].shape, float(out["init_loss"])
    ((2, 4), 0.0)
  """
  sampler = chain_sampler(loss_fn, cfg, mask)
  batch_size = None if sampler.full_batch else cfg.batch_size

  def run_point(key, anchor, settings, data) -> dict:
    keys = jax.random.split(key, cfg.num_chains)
    sets = None
    if spec is not None:
      data, sets = data
    chain = lambda *args: run_chain(sampler, cfg, num_examples, spec, *args)
    trace, accept, dist, scale, blocks, seen = jax.vmap(
      chain, (0, None, None, None, None)
    )(keys, anchor, settings, data, sets)
    if batch_size is None:
      noise = jnp.zeros((), jnp.float32)
    else:  # the key's own stream, apart from the chains' split(key, C).
      noise_key = jax.random.fold_in(key, cfg.num_chains)
      noise = minibatch_loss_std(
        loss_fn, anchor, data, noise_key, num_examples, batch_size
      )
    out = {
      "init_loss": loss_fn(anchor, data),
      "init_batch_loss_std": noise,
      "loss_trace": trace,
      "mala_accept": accept,
      "distance_sq": dist,
      "step_scale": jnp.asarray(scale, jnp.float32),
      **{COVARIANCE_OUTPUTS[k]: v for k, v in blocks.items()},
    }
    for name in () if spec is None else spec.names:
      out[f"observables/{name}"] = seen[name]
      out[f"init_observables/{name}"] = per_example_losses(
        spec.per_example_loss_fn, anchor, sets[name], spec.batch_size
      )
    return out

  return run_point
