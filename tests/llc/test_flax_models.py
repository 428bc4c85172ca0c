"""Flax models in the engine: nnx and Linen through estimate_llc, sweeps,
observables, autotune and persist; a restricted LLC against its closed form."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from markdown_blocks import fenced_blocks, section

from slt_jax import persist
from slt_jax.llc import (
  SGLDConfig,
  autotune,
  compile_sweep,
  estimate_llc,
  mask_from_paths,
  split_linen,
  split_nnx,
)
from slt_jax.theory import sgld_llc_hat_quadratic

QUIET = dict(progress=False, warn=False)
ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)


class MLP(nnx.Module):
  """``out(tanh(hidden(x)))``: 8 inputs, 4 hidden units, 2 outputs."""

  def __init__(self, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(8, 4, rngs=rngs)
    self.out = nnx.Linear(4, 2, rngs=rngs)

  def features(self, x):
    return jnp.tanh(self.hidden(x))

  def __call__(self, x):
    return self.out(self.features(x))


def _mlp_by_hand(p: dict, x):
  """``MLP`` written out over a plain dict of its parameters."""
  h = jnp.tanh(x @ p["hidden"]["kernel"] + p["hidden"]["bias"][None])
  return h @ p["out"]["kernel"] + p["out"]["bias"][None]


def _squared_error(pred, y):
  return 0.5 * jnp.sum((pred - y) ** 2, -1)


def _teacher_data(model, n=256):
  """Inputs and the model's own outputs: the model is at a zero-loss
  minimum of the squared error."""
  x = jax.random.normal(jax.random.key(1), (n, 8))
  return {"x": x, "y": model(x)}


def _stack(*trees):
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


class Regularised(nnx.Module):
  """Dense, dropout and batch norm: what evaluation mode changes."""

  def __init__(self, rngs: nnx.Rngs):
    self.dense = nnx.Linear(3, 2, rngs=rngs)
    self.dropout = nnx.Dropout(0.5, rngs=rngs)
    self.norm = nnx.BatchNorm(2, rngs=rngs)

  def __call__(self, x):
    return self.norm(self.dropout(self.dense(x)))


def test_split_nnx_applies_the_model_in_eval_mode_with_fixed_statistics():
  model = Regularised(nnx.Rngs(0))
  model.norm.mean[...] = jnp.array([0.5, -1.0])
  model.norm.var[...] = jnp.array([4.0, 0.25])
  params, apply = split_nnx(model)
  assert sorted(params.keys()) == ["dense", "norm"]  # no mean/var
  x = jax.random.normal(jax.random.key(1), (5, 3))
  dense = x @ model.dense.kernel[...] + model.dense.bias[None]
  std = jnp.sqrt(jnp.array([4.0, 0.25]) + model.norm.epsilon)
  scale, bias = model.norm.scale[None], model.norm.bias[None]
  want = (dense - jnp.array([[0.5, -1.0]])) / std[None] * scale + bias
  np.testing.assert_allclose(apply(params, x), want, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(apply(params, x), apply(params, x))
  # The caller's model keeps its mode and statistics.
  assert model.dropout.deterministic is False
  assert model.norm.use_running_average is False
  np.testing.assert_array_equal(model.norm.mean[...], [0.5, -1.0])
  # Without eval mode, batch norm uses the batch's statistics: every
  # output column then has mean ``bias`` (dropout leaves the mean of the
  # normalised column at 0 too).
  _, train_apply = split_nnx(model, eval_mode=False)
  np.testing.assert_allclose(
    jnp.mean(train_apply(params, x), 0), model.norm.bias[...], atol=1e-5
  )


def test_split_nnx_takes_a_filter_and_refuses_bad_input():
  model = MLP(nnx.Rngs(0))
  out_only, apply = split_nnx(model, nnx.PathContains("out"))
  assert list(out_only.keys()) == ["out"]
  x = jnp.ones((3, 8))
  np.testing.assert_allclose(apply(out_only, x), model(x), rtol=1e-6)
  with pytest.raises(ValueError, match="trainable=.* selects no variable"):
    split_nnx(model, nnx.BatchStat)
  with pytest.raises(TypeError, match="model=dict is invalid"):
    split_nnx({"w": jnp.ones(2)})


def test_split_linen_holds_batch_stats_fixed():
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
      x = nn.BatchNorm(use_running_average=not train)(nn.Dense(3)(x))
      return nn.Dense(1)(x)[:, 0]

  net = Net()
  x = jax.random.normal(jax.random.key(0), (6, 2))
  variables = net.init(jax.random.key(1), x, train=False)
  variables["batch_stats"]["BatchNorm_0"]["mean"] = jnp.array([1.0, 2.0, 3.0])
  params, apply = split_linen(net, variables)
  assert params is variables["params"]
  want = net.apply(variables, x, train=False)
  np.testing.assert_array_equal(apply(params, x, train=False), want)
  shifted = jax.tree.map(lambda w: w + 0.1, params)
  np.testing.assert_array_equal(
    apply(shifted, x, train=False),
    net.apply({**variables, "params": shifted}, x, train=False),
  )
  with pytest.raises(ValueError, match="trainable='weights'"):
    split_linen(net, variables, "weights")
  with pytest.raises(ValueError, match="got list"):
    split_linen(net, [variables])


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_nnx_state_runs_like_a_plain_dict_through_the_engine():
  """The same chains and observables for an ``nnx.State`` of stacked models
  (through a held sweep) and for the plain dict of its arrays with the model
  written out (through ``estimate_llc``)."""
  model = MLP(nnx.Rngs(0))
  data = _teacher_data(model, n=64)
  params, apply = split_nnx(model)
  other = split_nnx(MLP(nnx.Rngs(3)))[0]
  states = _stack(params, other)
  plain = nnx.to_pure_dict(states)
  cfg = SGLDConfig(
    step_size=1e-4,
    nbeta=100.0,
    localization=1.0,
    num_chains=2,
    num_draws=40,
    num_burnin=10,
    batch_size=16,
  )
  observe = dict(
    observables={"first": jax.tree.map(lambda a: a[:5], data)},
    observe_every=20,
  )
  per_example = lambda p, b: _squared_error(apply(p, b["x"]), b["y"])
  sweep = compile_sweep(
    lambda p, b: jnp.mean(per_example(p, b)),
    cfg,
    data,
    states,
    1,
    mask="out/**",
    per_example_loss_fn=per_example,
    **observe,
  )
  nnx_run = sweep.run(jax.random.key(2), states, 1, **QUIET)
  by_hand = lambda p, b: _squared_error(_mlp_by_hand(p, b["x"]), b["y"])
  dict_run = estimate_llc(
    jax.random.key(2),
    lambda p, b: jnp.mean(by_hand(p, b)),
    plain,
    data,
    cfg,
    1,
    mask=lambda path, _: "out" in path,
    per_example_loss_fn=by_hand,
    **observe,
    **QUIET,
  )
  assert nnx_run.num_moving_params == dict_run.num_moving_params == 10
  np.testing.assert_allclose(nnx_run.loss_trace, dict_run.loss_trace, 1e-5)
  np.testing.assert_allclose(
    nnx_run.observables["first"], dict_run.observables["first"], 1e-5
  )
  assert nnx_run.observables["first"].shape == (2, 2, 2, 5)


def test_nnx_state_round_trips_through_persist(tmp_path):
  states = _stack(*(split_nnx(MLP(nnx.Rngs(s)))[0] for s in range(3)))
  path = str(tmp_path / "params.npz")
  persist.save_npz(path, persist.tree_to_arrays("params", states))
  # The template needs the structure only: a fresh model's abstract state.
  template = nnx.state(nnx.eval_shape(lambda: MLP(nnx.Rngs(0))), nnx.Param)
  loaded = persist.tree_from_arrays("params", persist.load_npz(path), template)
  assert isinstance(loaded, nnx.State)
  assert jax.tree.structure(loaded) == jax.tree.structure(states)
  for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(states)):
    np.testing.assert_array_equal(got, want)
  assert jax.tree.leaves(loaded)[0].shape[0] == 3


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:autotune did not settle")
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_autotune_takes_an_nnx_state():
  model = MLP(nnx.Rngs(0))
  data = _teacher_data(model, n=64)
  params, apply = split_nnx(model)
  cfg = SGLDConfig(nbeta=100.0, localization=1.0, batch_size=None)
  tuned = {}
  for name, point, fn in (
    ("nnx", params, apply),
    ("dict", nnx.to_pure_dict(params), _mlp_by_hand),
  ):
    loss_fn = lambda p, b: jnp.mean(_squared_error(fn(p, b["x"]), b["y"]))
    tuned[name] = autotune(
      jax.random.key(3), loss_fn, point, data, cfg, budget_grads=100_000
    )
  (nnx_cfg, nnx_report), (dict_cfg, dict_report) = tuned.values()
  assert nnx_cfg.step_size == pytest.approx(dict_cfg.step_size, rel=1e-5)
  np.testing.assert_allclose(
    nnx_report.result.per_chain, dict_report.result.per_chain, 1e-4
  )


def test_restricted_llc_of_a_layer_is_half_its_parameters():
  """Only the output layer (or one column of its kernel) moves: the loss is
  quadratic in those weights with Hessian ``I_2 ⊗ [F 1]^T [F 1] / n``
  (``F^T F / n`` for a column), F the hidden features, so the restricted
  LLC is d_moving / 2 and the finite run's expectation is known exactly."""
  model = MLP(nnx.Rngs(0))
  data = _teacher_data(model)
  params, apply = split_nnx(model)
  features = np.asarray(model.features(data["x"]), np.float64)
  n = len(features)
  with_bias = np.concatenate([features, np.ones((n, 1))], 1)
  cfg = SGLDConfig(
    step_size=1e-4,
    nbeta=1000.0,
    localization=1.0,
    num_chains=8,
    num_draws=2000,
    num_burnin=500,
    batch_size=None,
  )
  loss_fn = lambda p, b: jnp.mean(_squared_error(apply(p, b["x"]), b["y"]))
  cases = {
    "out/**": np.repeat(np.linalg.eigvalsh(with_bias.T @ with_bias / n), 2),
    "out/kernel[:, 0]": np.linalg.eigvalsh(features.T @ features / n),
  }
  masks = {
    "out/**": "out/**",
    "out/kernel[:, 0]": mask_from_paths(params, {"out/kernel": np.s_[:, 0]}),
  }
  for name, hessian_eigenvalues in cases.items():
    res = estimate_llc(
      jax.random.key(2), loss_fn, params, data, cfg, mask=masks[name], **QUIET
    )
    d = len(hessian_eigenvalues)
    assert res.num_moving_params == d
    expected = sgld_llc_hat_quadratic(
      hessian_eigenvalues,
      cfg.nbeta,
      cfg.localization,
      cfg.step_size,
      cfg.num_burnin,
      cfg.num_draws,
    )
    # nbeta h >> gamma in every direction: the run's expectation is d / 2
    # within 2% (localization and step size pull in opposite directions).
    assert abs(expected - d / 2) < 0.02 * d / 2, (name, expected)
    se = res.std / np.sqrt(cfg.num_chains)
    assert abs(res.mean - expected) < 4 * se + 0.03 * expected, (
      f"{name}: {res.mean:.3f} ± {se:.3f} vs {expected:.3f}"
    )


def test_readme_section_is_the_docs_pages_code():
  """The README's "A Flax model" blocks are the first blocks of the docs
  page, verbatim and in order (``tests/test_docs.py`` runs the page)."""
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    readme = fenced_blocks(section(f.read(), "A Flax model"), "python")
  page_path = os.path.join(ROOT, "docs", "how-to", "flax-model.md")
  with open(page_path, encoding="utf-8") as f:
    page = fenced_blocks(f.read(), "python")
  assert len(readme) == 2 and readme == page[: len(readme)]
