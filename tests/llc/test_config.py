"""``slt_jax.llc.config``: the groups of ``SGLDConfig``, their checks, and the
code that reads them (registry, resume fingerprint, ``llc_grid``)."""

import dataclasses
import itertools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import sweeps
from slt_jax.llc import registry, resume
from slt_jax.llc.config import (
  GROUPS,
  PAPER_SGLD,
  ChainBudget,
  DivergencePolicy,
  EngineConfig,
  SamplerConfig,
  SGLDConfig,
  TracedSettings,
)

# --- the groups ------------------------------------------------------------


def _names(cls) -> list:
  return [field.name for field in dataclasses.fields(cls)]


def test_groups_partition_the_flat_fields():
  grouped = [name for cls in GROUPS.values() for name in _names(cls)]
  assert sorted(grouped) == sorted(_names(SGLDConfig))
  assert len(grouped) == len(set(grouped)) == 18


def test_group_properties_hold_the_flat_values():
  cfg = SGLDConfig(
    step_size=2e-3,
    nbeta=7.5,
    localization=0.5,
    num_chains=5,
    num_draws=40,
    num_burnin=3,
    batch_size=None,
    sampler="rmsprop_sgld",
    rmsprop_decay=0.9,
    rmsprop_eps=1e-3,
    sghmc_friction=0.2,
    sgnht_diffusion=0.3,
    noise="counter_hash",
    chunk_size=7,
    memory_budget_bytes=1000,
    divergence_factor=4.0,
    mala_every=2,
  )
  assert cfg.sampler_config == SamplerConfig(
    "rmsprop_sgld", 0.9, 1e-3, 0.2, 0.3
  )
  assert cfg.traced_settings == TracedSettings(2e-3, 7.5, 0.5)
  assert cfg.budget == ChainBudget(5, 40, 3, None)
  assert cfg.engine == EngineConfig("counter_hash", 7, 1000, 2)
  assert cfg.divergence == DivergencePolicy(4.0)
  rebuilt = SGLDConfig.from_groups(
    cfg.sampler_config,
    cfg.traced_settings,
    cfg.budget,
    cfg.engine,
    cfg.divergence,
  )
  assert rebuilt == cfg and hash(rebuilt) == hash(cfg)


def test_from_groups_defaults_and_bad_group():
  assert SGLDConfig.from_groups() == SGLDConfig()
  cfg = SGLDConfig.from_groups(budget=ChainBudget(num_draws=9))
  assert cfg == SGLDConfig(num_draws=9)
  with pytest.raises(TypeError, match="budget=.* must be a ChainBudget"):
    SGLDConfig.from_groups(budget=EngineConfig())


def test_flat_api_still_works():
  cfg = dataclasses.replace(PAPER_SGLD, step_size=1e-3, sampler="mala")
  assert (cfg.step_size, cfg.sampler, cfg.num_draws) == (1e-3, "mala", 500)
  assert cfg.sampler_config.sampler == "mala"
  assert dataclasses.asdict(cfg)["step_size"] == 1e-3
  assert len(dataclasses.asdict(cfg)) == 18
  with pytest.raises(dataclasses.FrozenInstanceError):
    cfg.step_size = 1.0  # type: ignore[misc]


# --- checks ----------------------------------------------------------------

# (field, bad value, the message's requirement, the group that checks it).
BAD_VALUES = [
  ("step_size", 0.0, "must be a finite number > 0", TracedSettings),
  ("step_size", -1e-3, "must be a finite number > 0", TracedSettings),
  ("step_size", 1e-50, "rounds to 0 in float32", TracedSettings),
  ("step_size", 1e39, "overflows to inf in float32", TracedSettings),
  ("step_size", math.nan, "must be a finite number", TracedSettings),
  ("nbeta", 0.0, "must be a finite number > 0", TracedSettings),
  ("nbeta", 1e-50, "rounds to 0 in float32", TracedSettings),
  ("nbeta", 1e39, "overflows to inf in float32", TracedSettings),
  (
    "nbeta",
    "9",
    "must be a positive float, 'default' or 'n_log_n'",
    TracedSettings,
  ),
  ("localization", -1.0, "must be >= 0", TracedSettings),
  ("rmsprop_decay", 1.0, "must lie in [0, 1)", SamplerConfig),
  ("rmsprop_decay", 1.5, "must lie in [0, 1)", SamplerConfig),
  ("rmsprop_decay", -0.5, "must lie in [0, 1)", SamplerConfig),
  ("rmsprop_eps", 0.0, "must be a finite number > 0", SamplerConfig),
  ("rmsprop_eps", -1e-3, "must be a finite number > 0", SamplerConfig),
  ("rmsprop_eps", 1e-50, "rounds to 0 in float32", SamplerConfig),
  ("rmsprop_eps", math.inf, "must be a finite number", SamplerConfig),
  ("rmsprop_eps", math.nan, "must be a finite number", SamplerConfig),
  ("sampler", "nuts", "must be one of", SamplerConfig),
  ("sghmc_friction", 0.0, "must lie in (0, 1] (1 is SGLD)", SamplerConfig),
  ("sgnht_diffusion", 2.0, "must lie in (0, 1]", SamplerConfig),
  ("num_chains", 0, "must be >= 1", ChainBudget),
  ("num_draws", 1, "must be >= 2", ChainBudget),
  ("num_draws", 2.5, "must be an integer", ChainBudget),
  ("num_burnin", -1, "must be >= 0", ChainBudget),
  ("batch_size", 1, "must be >= 2 or None (full batch)", ChainBudget),
  ("noise", "philox", "must be one of", EngineConfig),
  ("chunk_size", 0, "must be >= 1", EngineConfig),
  ("memory_budget_bytes", 0, "must be > 0", EngineConfig),
  ("mala_every", 0, "must be >= 1", EngineConfig),
  ("divergence_factor", 0.0, "must be > 0", DivergencePolicy),
]


@pytest.mark.parametrize("field, value, requirement, group", BAD_VALUES)
def test_bad_value_raises_naming_it_from_config_and_group(
  field, value, requirement, group
):
  message = re.escape(f"{field}={value!r} is invalid: {requirement}")
  with pytest.raises(ValueError, match=message):
    SGLDConfig(**{field: value})
  with pytest.raises(ValueError, match=message):
    group(**{field: value})


@pytest.mark.parametrize(
  "field, value",
  [
    ("rmsprop_decay", 0.0),
    ("rmsprop_decay", 0.9999),
    ("rmsprop_eps", 1e-30),
    ("step_size", 1e-44),
    ("step_size", 1),
    ("nbeta", 3e38),
    ("nbeta", "n_log_n"),
  ],
)
def test_edge_values_inside_the_range_are_accepted(field, value):
  assert getattr(SGLDConfig(**{field: value}), field) == value


def test_float32_step_size_is_nonzero_where_accepted():
  # 1e-45 is the smallest float32 subnormal's neighbourhood: kept nonzero;
  # 1e-46 rounds to 0 and is refused.
  assert np.float32(SGLDConfig(step_size=1e-45).step_size) > 0
  with pytest.raises(ValueError, match="step_size=1e-46 is invalid"):
    SGLDConfig(step_size=1e-46)


# --- program key (llc_grid's grouping) --------------------------------------


def test_program_key_ignores_exactly_the_traced_settings():
  base = SGLDConfig()
  traced = [("step_size", 1e-3), ("nbeta", 3.0), ("localization", 0.0)]
  for field, value in traced:
    other = dataclasses.replace(base, **{field: value})
    assert other.program_key == base.program_key, field
  untraced = [
    ("num_draws", 9),
    ("sampler", "mala"),
    ("rmsprop_decay", 0.5),
    ("noise", "rbg"),
    ("chunk_size", 4),
    ("divergence_factor", 3.0),
  ]
  for field, value in untraced:
    other = dataclasses.replace(base, **{field: value})
    assert other.program_key != base.program_key, field


def test_program_key_groups_as_the_former_placeholder_replace():
  """Grouping by ``program_key`` equals the former grouping: the config with
  eps, nβ and γ replaced by placeholders."""
  values = {
    "step_size": (1e-4, 2e-4),
    "nbeta": ("default", 5.0),
    "localization": (1.0, 5.0),
    "num_draws": (10, 20),
    "sampler": ("sgld", "sghmc"),
    "divergence_factor": (10.0, 2.0),
  }
  cfgs = [
    SGLDConfig(**dict(zip(values, combo)))
    for combo in itertools.product(*values.values())
  ]
  for a, b in itertools.product(cfgs, cfgs):
    placeholders = dict(step_size=1.0, nbeta=1.0, localization=1.0)
    former = dataclasses.replace(a, **placeholders) == dataclasses.replace(
      b, **placeholders
    )
    assert (a.program_key == b.program_key) == former


# --- registry and resume ------------------------------------------------------


def test_registry_builds_from_the_sampler_group():
  loss = lambda w, batch: 0.5 * jnp.sum(w**2)
  cfg = SGLDConfig(sampler="sgnht", sgnht_diffusion=0.25)
  state = registry.chain_sampler(loss, cfg).init(jnp.ones(3), None)
  assert float(state.friction) == 0.25
  assert registry.own_constants(cfg.sampler_config) == {
    "sampler": "sgnht",
    "sgnht_diffusion": 0.25,
  }


def test_chain_spec_is_the_former_field_list():
  """The fingerprint's config part holds the same entries as before the
  groups (so existing resume folders keep their fingerprint)."""
  former_fields = (
    "sampler",
    "noise",
    "num_chains",
    "num_burnin",
    "num_draws",
    "batch_size",
    "mala_every",
  )
  for sampler in ("sgld", "rmsprop_sgld", "mala", "sghmc", "sgnht"):
    cfg = SGLDConfig(sampler=sampler, batch_size=None, noise="rbg")
    names = former_fields + registry.SAMPLERS[sampler].parameters
    assert resume.chain_spec(cfg) == {n: getattr(cfg, n) for n in names}


def test_chain_spec_ignores_what_does_not_change_the_numbers():
  base = SGLDConfig(sampler="sghmc")
  same = [
    ("chunk_size", 3),
    ("memory_budget_bytes", 5),
    ("divergence_factor", 2.0),
    ("step_size", 1e-2),
    ("rmsprop_decay", 0.5),
  ]
  for field, value in same:
    other = dataclasses.replace(base, **{field: value})
    assert resume.chain_spec(other) == resume.chain_spec(base), field
  changed = [
    ("sghmc_friction", 0.5),
    ("noise", "rbg"),
    ("mala_every", 1),
    ("num_chains", 4),
  ]
  for field, value in changed:
    other = dataclasses.replace(base, **{field: value})
    assert resume.chain_spec(other) != resume.chain_spec(base), field


# --- llc_grid ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_llc_grid_runs_one_sweep_per_program_key(monkeypatch):
  calls = []
  real = sweeps.estimate_llc

  def spy(*args, **kwargs):
    result = real(*args, **kwargs)
    calls.append((args[4], kwargs["settings"], result))
    return result

  monkeypatch.setattr(sweeps, "estimate_llc", spy)
  loss = lambda w, x: 0.5 * jnp.mean((x * w) ** 2)
  data = jnp.linspace(0.5, 1.5, 16)
  points = jnp.array([0.1, -0.2])
  base = SGLDConfig(
    step_size=1e-2,
    nbeta=4.0,
    localization=1.0,
    num_chains=2,
    num_draws=8,
    num_burnin=2,
    batch_size=None,
  )
  cfgs = [
    base,
    dataclasses.replace(base, num_draws=10),
    dataclasses.replace(base, step_size=2e-2, localization=3.0),
    dataclasses.replace(base, nbeta="n_log_n"),
  ]
  out = sweeps.llc_grid(
    jax.random.key(0), loss, points, data, cfgs, None, batch_ndim=1
  )
  assert len(calls) == 2
  (cfg0, grid0, res0), (cfg1, grid1, res1) = calls
  assert cfg0 == base and cfg1 == cfgs[1]
  assert list(grid0.step_size) == [1e-2, 2e-2, 1e-2]
  assert list(grid0.localization) == [1.0, 3.0, 1.0]
  assert list(grid0.nbeta) == [4.0, 4.0, 16 / math.log(16)]
  assert list(grid1.step_size) == [1e-2]
  for i, res, j in [(0, res0, 0), (2, res0, 1), (3, res0, 2), (1, res1, 0)]:
    np.testing.assert_array_equal(out[i]["mean"], res.mean[j])
    assert out[i]["config"] == dataclasses.asdict(cfgs[i])
  assert out[3]["nbeta"] == pytest.approx(16 / math.log(16))
