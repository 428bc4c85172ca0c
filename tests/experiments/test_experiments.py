"""Smoke tests of the experiment scripts, plus a real grokking run."""

import math
import os

import numpy as np
import pytest

from experiments import (
  cli,
  gsm_vs_lr,
  llc_by_layer,
  regimes,
  results,
  robustness,
  toy_landscapes,
  train_modular,
)
from slt_jax import persist
from slt_jax.grokking import grokking_metrics

# Compile-bound smoke runs: see conftest.cheap_compiles.
pytestmark = pytest.mark.usefixtures("cheap_compiles")

TINY = [
  "--p",
  "7",
  "--width",
  "16",
  "--train-frac",
  "0.6",
  "--batch-size",
  "8",
  "--lr",
  "1e-2",
  "--steps",
  "200",
  "--log-every",
  "10",
  "--ckpt-every",
  "50",
  "--seeds",
  "2",
  "--no-progress",
]
RESULT_KEYS = (
  "config",
  "num_train",
  "num_params",
  "log_steps",
  "ckpt_steps",
  "metrics",
  "memorisation_step",
  "generalisation_step",
  "grokking_delay",
  "gsm",
  "final",
  "steps_per_second",
  "wall_seconds",
  "environment",
)


def _all_finite(x) -> bool:
  if isinstance(x, dict):
    return all(_all_finite(v) for v in x.values())
  if isinstance(x, list):
    return all(_all_finite(v) for v in x)
  if isinstance(x, float):
    return math.isfinite(x)
  return x is not None


def test_cli_parse_args_and_output_dir(tmp_path, monkeypatch):
  args = cli.parse_args("x", argv=[])
  assert (args.quick, args.out, args.seed) == (False, None, 0)
  args = cli.parse_args(
    "x",
    lambda p: p.add_argument("--foo", type=int, default=1),
    ["--quick", "--out", str(tmp_path), "--seed", "3", "--foo", "2"],
  )
  assert (args.quick, args.out, args.seed, args.foo) == (
    True,
    str(tmp_path),
    3,
    2,
  )
  monkeypatch.chdir(tmp_path)
  assert cli.output_dir("exp") == os.path.join("figures", "exp")
  assert os.path.isdir(tmp_path / "figures" / "exp")
  assert cli.output_dir("exp", str(tmp_path / "o")) == str(tmp_path / "o")
  path = results.write_results(
    str(tmp_path / "o"), {"a": np.arange(3), "b": float("nan")}
  )
  loaded = persist.load_json(path)
  assert loaded["a"] == [0, 1, 2] and loaded["b"] is None
  assert "jax" in loaded["environment"]


def test_get_config():
  for mode in ("quick", "default", "paper"):
    cfg = train_modular.CONFIGS[mode]
    assert cfg.data.p == cfg.model.p == 53 and cfg.model.width == 1024
    assert cfg.train.loss == "centered_mse" and cfg.train.optimizer == "adam"
    assert cfg.train.batch_size == 128 and cfg.seeds >= 1
  assert train_modular.CONFIGS["quick"].seeds == 1
  smoke = train_modular.CONFIGS["smoke"]
  assert smoke.data.p == smoke.model.p == 7


def test_flags_override_config():
  args, mode = cli.parse_mode("x", train_modular.add_flags, ["--quick"] + TINY)
  cfg = train_modular.config_from_args(args, mode)
  assert mode == "quick"
  assert cfg.data.p == cfg.model.p == 7 and cfg.data.train_frac == 0.6
  assert cfg.model.width == 16 and cfg.seeds == 2
  assert (
    cfg.train.num_steps,
    cfg.train.log_every,
    cfg.train.ckpt_every,
    cfg.train.chunk_steps,
    cfg.train.batch_size,
  ) == (200, 10, 50, 50, 8)
  # No flag: the mode's config unchanged.
  args, mode = cli.parse_mode("x", train_modular.add_flags, [])
  assert (
    train_modular.config_from_args(args, mode)
    == (train_modular.CONFIGS["default"])
  )
  args, mode = cli.parse_mode("x", train_modular.add_flags, ["--steps", "300"])
  with pytest.raises(ValueError, match="num_steps=300"):
    train_modular.config_from_args(args, mode)


def test_train_modular_smoke(tmp_path, monkeypatch):
  out, store = str(tmp_path / "run"), str(tmp_path / "runs")
  payload = train_modular.main(TINY + ["--out", out, "--runs", store])
  results = persist.load_json(os.path.join(out, "results.json"))
  for key in RESULT_KEYS + ("name", "mode"):
    assert key in results, key
  assert set(payload) == set(results)
  assert _all_finite(
    {k: v for k, v in results.items() if k not in ("config", "environment")}
  )
  assert results["steps_per_second"] > 0
  assert len(results["log_steps"]) == 21 and results["ckpt_steps"][-1] == 200
  for name in ("train_loss", "val_loss", "train_acc", "val_acc"):
    assert np.shape(results["metrics"][name]) == (2, 21)
  for name in (
    "memorisation_step",
    "generalisation_step",
    "grokking_delay",
    "gsm",
  ):
    assert np.shape(results[name]) == (2,)
  steps, m = results["log_steps"], results["metrics"]
  np.testing.assert_allclose(
    results["gsm"],
    grokking_metrics.grokking_severity(steps, m["train_acc"], m["val_acc"]),
  )
  np.testing.assert_array_equal(
    results["generalisation_step"],
    grokking_metrics.generalisation_step(steps, m["val_acc"]),
  )
  assert results["config"]["TrainConfig"]["num_steps"] == 200
  assert payload["num_train"] == results["num_train"] == round(0.6 * 49)
  assert os.path.getsize(os.path.join(out, "curves.png")) > 0
  # The training state lives in the run store and is gone once published.
  assert sorted(os.listdir(out)) == [
    "checkpoints.npz",
    "curves.png",
    "results.json",
  ]
  stored = os.listdir(store)
  assert len(stored) == 1 and not stored[0].endswith(".partial"), stored
  steps, params, dataset = train_modular.load_checkpoints(
    os.path.join(out, "checkpoints.npz")
  )
  np.testing.assert_array_equal(steps, [50, 100, 150, 200])
  assert params["W"].shape == (2, 4, 16, 14) and params["V"].shape == (
    2,
    4,
    7,
    16,
  )
  assert dataset.p == 7 and dataset.num_train == results["num_train"]
  # A second call loads the stored run: nothing is trained again.
  from slt_jax.grokking import train

  def refuse(*args, **kwargs):
    raise AssertionError("train_modular retrained a stored run")

  monkeypatch.setattr(train, "train", refuse)
  again = train_modular.main(TINY + ["--out", out, "--runs", store])
  assert again["metrics"] == results["metrics"]
  # --replot redraws curves.png from results.json alone.
  monkeypatch.setattr(train_modular, "compute", refuse)
  os.remove(os.path.join(out, "curves.png"))
  train_modular.main(["--replot", "--out", out])
  assert os.path.getsize(os.path.join(out, "curves.png")) > 0


@pytest.mark.usefixtures("optimized_compiles")
def test_quick_config_groks(tmp_path):
  """The real --quick run: memorises, then generalises (seconds on 2 cores;
  its time is spent training, so XLA optimizes it)."""
  out = str(tmp_path / "quick")
  train_modular.main(
    ["--quick", "--no-progress", "--out", out, "--runs", str(tmp_path / "runs")]
  )
  r = persist.load_json(os.path.join(out, "results.json"))
  train_acc = np.asarray(r["metrics"]["train_acc"])
  val_acc = np.asarray(r["metrics"]["val_acc"])
  assert np.all(train_acc.max(axis=1) == 1.0)
  mem = np.asarray(r["memorisation_step"])
  gen = np.asarray(r["generalisation_step"])
  assert np.all(mem >= 0) and np.all(gen >= 0)
  assert np.all(mem < gen)
  assert np.all(val_acc[:, -1] >= grokking_metrics.GENERALISATION_ACC)
  assert np.all(np.asarray(r["gsm"]) > 0)


# Smoke runs of the figure experiments (hidden --smoke configs: p = 7 or 11,
# width 16-32, 200 training steps, a few SGLD draws). They share compiled
# programs, so together they take about a minute.


def _smoke(module, tmp_path) -> dict:
  out = str(tmp_path / module.NAME)
  payload = module.main(["--smoke", "--out", out])
  results = persist.load_json(os.path.join(out, "results.json"))
  assert results["mode"] == "smoke"
  assert os.path.getsize(os.path.join(out, f"{module.NAME}.png")) > 0
  assert set(payload) | {"environment"} == set(results)
  return results


def _finite(*values) -> bool:
  return all(np.all(np.isfinite(np.asarray(v, dtype=float))) for v in values)


def test_llc_scaling_smoke_both_protocols_share_runs_and_replot(
  tmp_path, monkeypatch
):
  from experiments import llc_vs_p, llc_vs_width

  store = str(tmp_path / "runs")
  flags = ["--smoke", "--protocol", "both", "--runs", store]
  results = {}
  for module in (llc_vs_p, llc_vs_width):
    out = str(tmp_path / module.NAME)
    results[module.NAME] = module.main(flags + ["--out", out])
    assert os.path.getsize(os.path.join(out, f"{module.NAME}.png")) > 0
  # Fig. 1 (K=32; p=7, 11) and Fig. 2 (p=7; K=16, 32) share (7, 32): three
  # trained runs per protocol, not four.
  stored = sorted(d for d in os.listdir(store) if not d.endswith(".partial"))
  assert len(stored) == 6, stored
  for name, module in (("llc_vs_p", llc_vs_p), ("llc_vs_width", llc_vs_width)):
    r, cfg = results[name], module.CONFIGS["smoke"]
    assert set(r["fits"]) == {"recipe", "authors"}
    assert len(r["points"]) == 2 * len(cfg.series) * len(cfg.xs)
    for proto_name in ("recipe", "authors"):
      for fixed in cfg.series:
        fit = r["fits"][proto_name][str(fixed)]
        if fit["slope"] is None:  # every run dropped by the authors' filter
          continue
        # The fit is the least-squares line through its own points.
        slope, intercept = np.polyfit(fit["xs"], fit["llc"], 1)
        assert fit["slope"] == pytest.approx(slope, rel=1e-6)
        assert fit["intercept"] == pytest.approx(intercept, rel=1e-6, abs=1e-6)
    for point in r["points"]:
      proto = point["protocol"]
      sgld = r["protocols"][proto]["sgld"]
      b = sgld["batch_size"]
      assert point["llc_paper_settings"]["nbeta"] == pytest.approx(
        b / np.log(b)
      )
      assert np.shape(point["llc_paper_settings"]["mean"]) == (cfg.seeds,)
      assert _finite(point["llc_paper_settings"]["mean"])
      assert point["theory_generic_llc"] > 0 and point["theory_lazy_llc"] > 0
  # The recipe protocol uses batch 128 (nβ 26.4), the authors' 64 (15.4):
  # in smoke mode both are shrunk to 16, so check the real protocols.
  from experiments import protocols

  assert protocols.scaling_protocol("authors").sgld.batch_size == 64
  assert protocols.scaling_protocol("recipe").sgld.batch_size == 128
  # --replot redraws from results.json without computing anything.
  from experiments import scaling

  monkeypatch.setattr(scaling, "compute_scan", None)
  png = tmp_path / "llc_vs_p" / "llc_vs_p.png"
  png.unlink()
  again = llc_vs_p.main(
    [
      "--smoke",
      "--replot",
      "--protocol",
      "both",
      "--out",
      str(tmp_path / "llc_vs_p"),
    ]
  )
  assert png.stat().st_size > 0
  assert again["fits"] == results["llc_vs_p"]["fits"]
  # The paper README table is written from these results.json files alone.
  from experiments import paper_report

  text = open(paper_report.write_readme(str(tmp_path))).read()
  rows = llc_vs_p.paper_rows(again)
  assert len(rows) == sum(len(f) for f in again["fits"].values())
  for row in rows:
    assert row["quantity"] in text
  assert "| llc_over_training |" in text and "not run yet" in text


def _rho_or_none(x, y):
  """``grokking_metrics.spearman_rho`` as results.json stores it (nan -> None)."""
  rho = grokking_metrics.spearman_rho(x, y)
  return None if np.isnan(rho) else pytest.approx(rho)


def test_gsm_vs_lr_smoke_both_protocols_and_replot(tmp_path, monkeypatch):
  out, store = tmp_path / gsm_vs_lr.NAME, str(tmp_path / "runs")
  flags = ["--smoke", "--protocol", "both", "--out", str(out)]
  payload = gsm_vs_lr.main(flags + ["--runs", store])
  r = persist.load_json(out / "results.json")
  assert r["mode"] == "smoke" and set(payload) == set(r)
  assert (out / "gsm_vs_lr.png").stat().st_size > 0
  assert set(r["protocols"]) == {"recipe", "authors"}
  assert r["authors_settings_known"] is False
  assert len(os.listdir(store)) == 2  # one vmapped lr grid per protocol
  cfg = gsm_vs_lr.CONFIGS["smoke"]
  lrs, shape = np.asarray(r["lrs"]), (cfg.seeds, len(cfg.lrs))
  np.testing.assert_allclose(lrs, cfg.lrs)
  for name, p in r["protocols"].items():
    steps = np.asarray(p["log_steps"])
    train_acc, val_acc = np.asarray(p["train_acc"]), np.asarray(p["val_acc"])
    assert train_acc.shape == val_acc.shape == shape + (len(steps),)
    stop, final = np.asarray(p["stop_step"]), np.asarray(p["final_step"])
    np.testing.assert_array_equal(final, np.where(stop >= 0, stop, steps[-1]))
    gen = np.asarray(p["generalisation_step"])
    np.testing.assert_array_equal(
      gen, grokking_metrics.generalisation_step(steps, val_acc)
    )
    if name == "recipe":
      assert np.all(stop == -1)  # fixed length
    else:  # a run stops only after 3 checks >= 0.95
      assert np.all((stop == -1) | ((gen >= 0) & (stop >= gen)))
    # Both definitions, recomputed from the stored curves up to each run's T.
    for s_i, l_i in np.ndindex(*shape):
      upto = steps <= final[s_i, l_i]
      curves = train_acc[s_i, l_i, upto], val_acc[s_i, l_i, upto]
      assert p["gsm"]["values"][s_i][l_i] == pytest.approx(
        float(grokking_metrics.grokking_severity(steps[upto], *curves))
      )
      assert p["gsm_authors"]["values"][s_i][l_i] == pytest.approx(
        float(grokking_metrics.grokking_severity_authors(*curves))
      )
    for definition in ("gsm", "gsm_authors"):
      d = p[definition]
      values = np.asarray(d["values"])
      assert values.shape == shape and _finite(values)
      np.testing.assert_allclose(d["mean"], values.mean(0))
      np.testing.assert_allclose(d["std"], values.std(0))
      assert d["spearman_rho_means"] == _rho_or_none(lrs, values.mean(0))
      assert d["spearman_rho_runs"] == _rho_or_none(
        np.tile(lrs, cfg.seeds), values.ravel()
      )
    assert np.all(
      (np.asarray(p["gsm"]["values"]) >= 0)
      & (np.asarray(p["gsm"]["values"]) <= 1)
    )
    # The smoke config generalises at lr 3e-2: the checks above see a GSM.
    assert np.any(np.asarray(p["gsm"]["values"]) > 0)
  # The protocols at paper size: recipe batch 128 for 30k steps; authors
  # batch 64, stop 3 x >= 0.95 checked every 100 steps, capped at 30k.
  paper = gsm_vs_lr.CONFIGS["paper"]
  recipe = gsm_vs_lr.train_config("recipe", paper)
  authors = gsm_vs_lr.train_config("authors", paper)
  assert (
    recipe.batch_size,
    recipe.weight_decay,
    recipe.stop_acc,
    recipe.num_steps,
  ) == (128, 1e-5, None, 30000)
  assert (
    authors.batch_size,
    authors.weight_decay,
    authors.stop_acc,
    authors.stop_patience,
    authors.log_every,
    authors.num_steps,
  ) == (64, 1e-5, 0.95, 3, 100, 30000)
  assert paper.lrs[0] == 1e-4 and paper.lrs[-1] == 1e-2
  # --replot redraws the figure from results.json; compute is not called.

  def refuse(*args, **kwargs):
    raise AssertionError("--replot computed")

  monkeypatch.setattr(gsm_vs_lr, "compute", refuse)
  (out / "gsm_vs_lr.png").unlink()
  again = gsm_vs_lr.main(flags + ["--replot"])
  assert (out / "gsm_vs_lr.png").stat().st_size > 0
  assert again["protocols"] == r["protocols"]


def test_gsm_spearman_matches_definition():
  from slt_jax.grokking import grokking_metrics as m

  assert m.spearman_rho([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
  assert m.spearman_rho([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8333333)
  assert np.isnan(m.spearman_rho([1, 2, 3], [0, 0, 0]))


def test_toy_landscapes_smoke(tmp_path):
  r = _smoke(toy_landscapes, tmp_path)
  cfg = toy_landscapes.CONFIGS["smoke"]
  assert r["sgld"]["num_chains"] == cfg.num_chains
  assert r["sgld"]["num_draws"] == cfg.num_draws
  assert "protocol" in r
  assert set(r["potentials"]) == set(toy_landscapes.POTENTIALS)
  for name, row in r["potentials"].items():
    assert row["exact_llc"] == toy_landscapes.POTENTIALS[name][1]
    assert _finite(
      row["llc_mean"], row["llc_std"], row["finite_temperature_expectation"]
    )
    assert 0 < row["finite_temperature_expectation"] <= row["exact_llc"] + 1e-3
    assert len(row["per_chain"]) == cfg.num_chains
    if row["diverged_chains"] == 0:
      assert row["llc_mean"] == pytest.approx(np.mean(row["per_chain"]))
    assert row["rel_error_vs_exact"] == pytest.approx(
      row["llc_mean"] / row["exact_llc"] - 1
    )
  paper, default = (toy_landscapes.CONFIGS[m] for m in ("paper", "default"))
  assert (
    paper.num_chains * paper.num_draws > default.num_chains * default.num_draws
  )


def test_regimes_smoke_both_protocols(tmp_path, monkeypatch):
  from experiments import store

  runs_dir = tmp_path / "runs"
  monkeypatch.setattr(store, "RUNS_DIR", str(runs_dir))  # --runs' default
  out = str(tmp_path / "regimes")
  r = regimes.main(["--smoke", "--protocol", "both", "--out", out])
  for png in ("regimes.png", "regimes_authors.png"):
    assert os.path.getsize(os.path.join(out, png)) > 0
  recipe = r["protocols"]["recipe"]
  authors = r["protocols"]["authors"]
  cfg = regimes.CONFIGS["recipe"]["smoke"]
  acfg = regimes.CONFIGS["authors"]["smoke"]
  # One grid per modulus (recipe), one program per cell (authors).
  cells = len(acfg.moduli) * len(acfg.fractions)
  assert len(os.listdir(runs_dir)) == len(cfg.moduli) + cells
  assert recipe["protocol"]["authors_settings_known"] is False
  assert authors["protocol"]["authors_settings_known"] is True
  assert len(recipe["runs"]) == len(cfg.moduli) * len(cfg.fractions)
  assert len(authors["runs"]) == cells * acfg.seeds
  _check_recipe(recipe)
  _check_authors(authors)
  # A protocol not rerun is kept from the results already there.
  again = regimes.main(["--smoke", "--protocol", "authors", "--out", out])
  assert again["protocols"]["recipe"] == recipe


def _check_recipe(recipe):
  steps = np.asarray(recipe["log_steps"])
  mem, gen = [], []
  for run in recipe["runs"]:
    m, n = run["modulus"], run["num_train"]
    assert run["x"] == pytest.approx(n / (m * math.log(m)))
    # Steps and regime recomputed from the stored curves.
    mem.append(int(grokking_metrics.memorisation_step(steps, run["train_acc"])))
    gen.append(int(grokking_metrics.generalisation_step(steps, run["val_acc"])))
    assert (run["memorisation_step"], run["generalisation_step"]) == (
      mem[-1],
      gen[-1],
    )
  regime = regimes.classify(np.array(mem), np.array(gen))
  assert [run["regime"] for run in recipe["runs"]] == [
    regimes.REGIMES[i] for i in regime
  ]
  # The smoke sweep has runs on both sides of the lower boundary.
  assert 0 in regime and np.any(regime > 0)
  x = [run["x"] for run in recipe["runs"]]
  assert recipe["boundaries"] == {
    "none_vs_generalising": regimes.fit_threshold(x, regime > 0),
    "grokking_vs_immediate": regimes.fit_threshold(x, regime == 2),
  }
  lower = recipe["boundaries"]["none_vs_generalising"]
  assert lower["errors"] == 0 and lower["low"] < lower["high"]
  assert recipe["lower_boundary_consistent_with_spec"] == (
    lower["low"] < regimes.MEASURED_BOUNDARY[1]
    and lower["high"] > regimes.MEASURED_BOUNDARY[0]
  )


def _check_authors(authors):
  steps = np.asarray(authors["log_steps"])
  generalised = 0
  for run in authors["runs"]:
    val = np.asarray(run["val_acc"])
    # The stopping rule, recomputed: the 3rd consecutive check >= 0.95.
    streak, stop = 0, -1
    for step, acc in zip(steps, val):
      streak = streak + 1 if acc >= 0.95 else 0
      if streak == 3 and stop < 0:
        stop = int(step)
    assert run["stop_step"] == stop
    for budget, got in run["budgets"].items():
      seen = steps[: len(val)] <= int(budget)
      final = float(val[seen][-1])
      gap = float(np.max(np.asarray(run["train_acc"])[seen] - val[seen]))
      want = (
        "none" if final < 0.9 else "immediate" if gap < 0.15 else "grokking"
      )
      assert (got["regime"], got["final_val_acc"]) == (want, final)
      assert got["max_gap"] == pytest.approx(gap, abs=1e-6)
      generalised += want != "none"
  assert generalised > 0
  for budget, summary in authors["budgets"].items():
    regime = [r["budgets"][budget]["regime"] for r in authors["runs"]]
    assert summary["counts"] == {n: regime.count(n) for n in regimes.REGIMES}
    x = [r["x"] for r in authors["runs"]]
    assert summary["boundaries"] == regimes.boundaries_of(x, regime)


def test_regimes_configs_are_the_papers_grid():
  for name in regimes.protocols.NAMES:
    paper = regimes.CONFIGS[name]["paper"]
    assert (paper.moduli, paper.fractions, paper.width) == (
      regimes.MODULI,
      regimes.FRACTIONS,
      1024,
    )
  authors = regimes.CONFIGS["authors"]["paper"].train_config()
  assert (authors.lr, authors.batch_size, authors.log_every) == (1e-2, 64, 100)
  assert (authors.stop_acc, authors.stop_patience) == (0.95, 3)
  assert 5000 in regimes.CONFIGS["authors"]["paper"].budgets
  with pytest.raises(ValueError, match="budgets=.*20000"):
    regimes.RegimesConfig((53,), (0.3,), num_steps=15000, budgets=(20000,))


def test_regimes_classify_and_threshold():
  mem = np.array([250, 250, 250, -1])
  gen = np.array([-1, 4000, 500, 250])
  np.testing.assert_array_equal(regimes.classify(mem, gen), [0, 1, 2, 2])
  fit = regimes.fit_threshold([1.0, 2.0, 4.0, 8.0], [False, False, True, True])
  assert (fit["low"], fit["high"], fit["errors"]) == (2.0, 4.0, 0)
  assert fit["midpoint"] == pytest.approx(np.sqrt(8.0))
  steps = np.array([0, 100, 200, 300])
  train = np.array([0.0, 1.0, 1.0, 1.0])
  val = np.array([0.0, 0.2, 0.85, 0.97])
  # Budget 200: final 0.85 < 0.9. Budget 300: gap 0.8 >= 0.15: grokking.
  assert regimes.classify_authors(steps, train, val, 200)[0] == 0
  assert regimes.classify_authors(steps, train, val, 300) == (1, 0.97, 0.8)
  assert regimes.classify_authors(steps, train, train - 0.1, 300)[0] == 2


@pytest.fixture(scope="module")
def fig3_store(tmp_path_factory, cheap_compiles) -> str:
  """A run store warmed by ``llc_over_training --smoke`` (recipe run)."""
  from experiments import llc_over_training

  root = tmp_path_factory.mktemp("fig3")
  store = str(root / "runs")
  llc_over_training.main(
    ["--smoke", "--runs", store, "--out", str(root / "llc_over_training")]
  )
  return store


def _smoke_from_store(module, tmp_path, store, monkeypatch) -> dict:
  """``_smoke`` on the warm store, without training; then ``--replot``."""
  from slt_jax.grokking import train

  def refuse(*args, **kwargs):
    raise AssertionError(
      f"{module.NAME} trained a run that llc_over_training had stored"
    )

  monkeypatch.setattr(train, "train", refuse)
  out = str(tmp_path / module.NAME)
  payload = module.main(["--smoke", "--runs", store, "--out", out])
  results = persist.load_json(os.path.join(out, "results.json"))
  assert results["mode"] == "smoke" and set(payload) == set(results)
  png = os.path.join(out, f"{module.NAME}.png")
  assert os.path.getsize(png) > 0
  # --replot redraws the figure from results.json without computing.
  monkeypatch.setattr(module, "compute", None)
  os.remove(png)
  assert module.main(["--smoke", "--replot", "--out", out]) == payload
  assert os.path.getsize(png) > 0
  return results


def test_llc_by_layer_smoke(tmp_path, fig3_store, monkeypatch):
  r = _smoke_from_store(llc_by_layer, tmp_path, fig3_store, monkeypatch)
  assert set(r["curves"]) == set(llc_by_layer.CURVES)
  shape = (r["seeds"], len(r["llc_steps"]))
  for sweep in r["curves"].values():
    assert np.shape(sweep["mean"]) == shape and _finite(sweep["mean"])
  moving = {n: s["num_moving_params"] for n, s in r["curves"].items()}
  assert (
    moving["W only, train pairs"] + moving["V only, train pairs"]
    == moving["W and V, train pairs"]
  )
  # The carrier, recomputed from the curves: drop = peak - final per seed.
  drop = {
    n: [np.nanmax(m) - m[-1] for m in np.asarray(s["mean"], float)]
    for n, s in r["curves"].items()
  }
  for name in llc_by_layer.CURVES:
    np.testing.assert_allclose(r["drops"][name]["drop"], drop[name])
  w_drop = np.mean(drop["W only, train pairs"])
  v_drop = np.mean(drop["V only, train pairs"])
  assert r["drop_carried_by"] == ("W" if w_drop > v_drop else "V")


def test_robustness_smoke(tmp_path, fig3_store, monkeypatch):
  r = _smoke_from_store(robustness, tmp_path, fig3_store, monkeypatch)
  assert r["authors_settings_known"] is False and r["protocol"] == "recipe"
  assert set(r["panels"]) == {
    "seed",
    "step size ε",
    "localization γ",
    "nβ",
    "chain length",
  }
  for entries in r["panels"].values():
    assert len(entries) >= 2
    for curve in entries.values():
      assert _finite(curve["llc_mean"], curve["summary"]["final_over_peak"])
      # Recomputed from the curve: peak at or after memorisation, then lower.
      llc = np.asarray(curve["llc_mean"], float)
      peak = int(np.nanargmax(llc))
      mem = r["memorisation_step"][curve["train_seed"]]
      assert curve["holds"] is bool(
        llc[-1] / llc[peak] < 1.0 and r["llc_steps"][peak] >= mem
      )
  assert r["panel_holds"] == {
    panel: all(c["holds"] for c in entries.values())
    for panel, entries in r["panels"].items()
  }
  assert r["all_hold"] == all(r["panel_holds"].values())
  # The paper's settings are one curve of every knob's panel.
  base = next(iter(r["panels"]["seed"].values()))["sgld"]
  for panel, entries in r["panels"].items():
    assert any(c["sgld"] == base for c in entries.values()), panel


def test_llc_conventions_smoke_and_replot(tmp_path, monkeypatch):
  from experiments import llc_conventions

  out = str(tmp_path / "conv")
  flags = ["--smoke", "--out", out, "--runs", str(tmp_path / "runs")]
  r = llc_conventions.main(flags)
  cfg = llc_conventions.CONFIGS["smoke"]
  labels = [label for label, _ in cfg.checkpoints]
  assert set(r["by_batch"]) == {str(b) for b in cfg.batch_sizes}
  for b, row in r["by_batch"].items():
    for label in labels:
      assert row[label]["nbeta"] == pytest.approx(int(b) / np.log(int(b)))
      # The running estimate over [burnin, T_last) is the window of that span.
      assert len(row[label]["running"]) == len(cfg.chain_lengths)
      assert _finite(row[label]["running"])
  assert set(r["by_nbeta"]) == {f"{nb:g}" for nb in cfg.nbetas}
  for value, row in r["by_nbeta"].items():
    assert row[labels[0]]["nbeta"] == pytest.approx(float(value))
  # Each drop flag is the comparison of the stored windows.
  for axis, table in (("batch", r["by_batch"]), ("nbeta", r["by_nbeta"])):
    for value, row in table.items():
      for window in row[labels[0]]["windows"]:
        first = row[labels[0]]["windows"][window]["mean"]
        last = row[labels[-1]]["windows"][window]["mean"]
        assert r["drop_through_grokking"][
          f"{axis}={value}, steps {window}"
        ] == (last < first)
  assert r["drop_holds_everywhere"] == all(r["drop_through_grokking"].values())
  monkeypatch.setattr(llc_conventions, "compute", None)
  png = tmp_path / "conv" / "llc_conventions.png"
  png.unlink()
  llc_conventions.main(["--smoke", "--replot", "--out", out])
  assert png.stat().st_size > 0
