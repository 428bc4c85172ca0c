"""Models whose learning coefficient is known exactly, as LLC test cases.

Each ``KnownCase`` bundles a loss, a point w*, data, the true coefficient (from
``slt_jax.theory``) and SGLD settings under which the estimator should recover
it. Both the test-suite and ``experiments.llc_validation`` run them through the
public ``estimate_llc``. Where the finite-temperature expectation of the
estimate is computable exactly it is given too (``finite_temp``), which tests
the sampler more sharply than the asymptotic value.

Nothing is built at import: a factory that draws data or parameters takes an
explicit PRNG key, and ``CASES`` maps each public case's name to a factory
``(key, scale) -> KnownCase``.

Example:
  >>> import jax
  >>> case = make_case("rrr_5_3_5", jax.random.key(0))
  >>> case.name, case.true_llc, case.data.shape
  ('rrr_5_3_5', 6.5, (1000, 5))
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from slt_jax import theory
from slt_jax.checks import check, is_real
from slt_jax.grokking import data as data_lib
from slt_jax.grokking import losses, model
from slt_jax.grokking.config import DataConfig, ModelConfig
from slt_jax.llc.config import SGLDConfig
from slt_jax.tree_types import PRNGKey


@dataclasses.dataclass(frozen=True)
class KnownCase:
  """One validation case.

  Attributes:
    name: short identifier.
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    params: the point w*.
    data: data pytree (example axis first).
    true_llc: exact learning coefficient.
    cfg: SGLD settings for the estimate.
    rel_tol: accepted relative error of the mean.
    std_tol: alternatively accepted distance in chain standard deviations
      (0 = relative tolerance only).
    mask: optional mask of moving parameters.
    finite_temp: exact expectation of the estimate at ``cfg``'s nbeta and
      gamma (None if unknown).
    multiplicity: multiplicity m of ``true_llc`` (the order of the pole of
      the zeta function); the estimate's leading finite-nbeta correction is
      ``-(m - 1) / ln(nbeta)``.
  """

  name: str
  loss_fn: Callable
  params: Any
  data: Any
  true_llc: float
  cfg: SGLDConfig
  rel_tol: float
  std_tol: float = 0.0
  mask: Optional[Callable] = None
  finite_temp: Optional[float] = None
  multiplicity: int = 1

  def passed(self, mean: float, std: float) -> bool:
    """Whether an estimate ``mean ± std`` (over chains) recovers the truth."""
    err = abs(mean - self.true_llc)
    return bool(
      err <= self.rel_tol * abs(self.true_llc) or err <= self.std_tol * std
    )


def isotropic_quadratic(d: int = 20, scale: float = 1.0) -> KnownCase:
  """``L = ||w||^2 / 2`` at 0: estimate ``(d/2) nbeta / (nbeta + gamma)``."""
  cfg = SGLDConfig(
    step_size=2e-4,
    nbeta=100.0,
    localization=10.0,
    num_chains=8,
    num_draws=int(8000 * scale),
    num_burnin=500,
    batch_size=None,
  )
  truth = theory.isotropic_quadratic_llc_hat(d, cfg.nbeta, cfg.localization)
  return KnownCase(
    name=f"isotropic_quadratic_d{d}",
    loss_fn=lambda w, batch: 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(batch),
    params=jnp.zeros(d),
    data=jnp.zeros((16, 1)),
    true_llc=truth,
    cfg=cfg,
    rel_tol=0.05,
    finite_temp=truth,
  )


def normal_crossing(
  key: PRNGKey, exponents: tuple[int, int], scale: float = 1.0
) -> KnownCase:
  """``f(x; w) = x w1^k1 w2^k2`` fit to y = 0 at w = 0: ``1 / (2 max k)``.

  Args:
    key: PRNG key for the 1000 standard normal inputs x.
    exponents: (k1, k2).
    scale: multiplies the number of draws.

  Returns:
    The case, with the exact finite-temperature expectation.
  """
  x = jax.random.normal(key, (1000,))
  k = jnp.asarray(exponents, jnp.float32)

  def loss_fn(w, x_B):
    return 0.5 * jnp.mean(jnp.square(x_B * jnp.prod(w**k)))

  cfg = SGLDConfig(
    step_size=1e-4,
    nbeta=1e4,
    localization=1.0,
    num_chains=16,
    num_draws=int(10000 * scale),
    num_burnin=1000,
    batch_size=None,
  )
  # The data's second moment rescales K: fold it into nbeta for the quadrature.
  second_moment = float(jnp.mean(x**2))
  return KnownCase(
    name=f"normal_crossing_{exponents[0]}{exponents[1]}",
    loss_fn=loss_fn,
    params=jnp.zeros(2),
    data=x,
    true_llc=theory.normal_crossing_llc(list(exponents)),
    cfg=cfg,
    rel_tol=0.15,
    std_tol=3.5,
    finite_temp=theory.gibbs_expectation_2d(
      exponents, cfg.nbeta * second_moment, cfg.localization
    ),
  )


def reduced_rank_regression(
  key: PRNGKey, m: int, h: int, n_out: int, scale: float = 1.0
) -> KnownCase:
  """Linear net ``B A x`` (A: h×m, B: n_out×h) at the zero map, true rank 0.

  Args:
    key: PRNG key for the 1000 standard normal inputs x (m-dimensional).
    m: input dimension.
    h: hidden dimension.
    n_out: output dimension.
    scale: multiplies the number of draws.

  Returns:
    The case (Aoyagi-Watanabe coefficient at rank 0, with its multiplicity).
  """
  x = jax.random.normal(key, (1000, m))

  def loss_fn(w, x_BxM):
    return 0.5 * jnp.mean(jnp.sum(jnp.square(x_BxM @ w["A"].T @ w["B"].T), -1))

  cfg = SGLDConfig(
    step_size=1e-4,
    nbeta=1e3,
    localization=1.0,
    num_chains=8,
    num_draws=int(5000 * scale),
    num_burnin=1000,
    batch_size=None,
  )
  return KnownCase(
    name=f"rrr_{m}_{h}_{n_out}",
    loss_fn=loss_fn,
    params={"A": jnp.zeros((h, m)), "B": jnp.zeros((n_out, h))},
    data=x,
    true_llc=theory.reduced_rank_regression_llc(m, h, n_out, 0),
    multiplicity=theory.deep_linear_llc((m, h, n_out), 0)[1],
    cfg=cfg,
    rel_tol=0.25,
  )


def lazy_random_features(
  key: PRNGKey,
  p: int,
  width: int,
  num_train: int,
  init_scale: float,
  step_size: float,
  scale: float = 1.0,
) -> KnownCase:
  """The quadratic net with W frozen (a restricted LLC over V), plain MSE.

  V* is the least-squares fit, so the loss is quadratic in V with Hessian
  rank ``p min(K, n)``: the coefficient is ``p min(K, n) / 2`` (Thm 5.2).

  Args:
    key: PRNG key, split for the training split and the initial W.
    p: modulus.
    width: hidden width K.
    num_train: number of training pairs n.
    init_scale: scale of the (frozen) initial W.
    step_size: SGLD step size.
    scale: multiplies the number of draws.

  Returns:
    The case, with a mask that moves V only.
  """
  key_data, key_init = jax.random.split(key)
  data = data_lib.modular_arithmetic(
    key_data, DataConfig(p=p, num_train=num_train)
  ).train
  params = model.init(
    key_init, ModelConfig(p=p, width=width, init_scale=init_scale)
  )
  w_DxK = np.asarray(params["W"], np.float64).T
  phi_NxK = np.square(
    w_DxK[np.asarray(data.pairs[:, 0])]
    + w_DxK[p + np.asarray(data.pairs[:, 1])]
  )
  y_NxP = np.eye(p)[np.asarray(data.labels)]
  v_KxP = np.linalg.lstsq(phi_NxK, y_NxP, rcond=None)[0]
  params = {"W": params["W"], "V": jnp.asarray(v_KxP.T, jnp.float32)}
  cfg = SGLDConfig(
    step_size=step_size,
    nbeta=1e4,
    localization=1.0,
    num_chains=8,
    num_draws=int(6000 * scale),
    num_burnin=1000,
    batch_size=None,
  )
  return KnownCase(
    name=f"lazy_rf_p{p}_K{width}_n{num_train}",
    loss_fn=losses.make_loss("mse"),
    params=params,
    data=data,
    true_llc=theory.lazy_random_features_llc(p, width, num_train),
    cfg=cfg,
    rel_tol=0.10,
    mask=lambda path, _: "V" in path,
  )


# name -> factory(key, scale); names equal the built cases' ``name``.
CASES: dict[str, Callable[[PRNGKey, float], KnownCase]] = {
  "isotropic_quadratic_d20": lambda key, scale: isotropic_quadratic(20, scale),
  "normal_crossing_11": functools.partial(normal_crossing, exponents=(1, 1)),
  "normal_crossing_12": functools.partial(normal_crossing, exponents=(1, 2)),
  "normal_crossing_23": functools.partial(normal_crossing, exponents=(2, 3)),
  "rrr_5_3_5": functools.partial(reduced_rank_regression, m=5, h=3, n_out=5),
  "rrr_4_3_8": functools.partial(reduced_rank_regression, m=4, h=3, n_out=8),
  "lazy_rf_p7_K8_n20": functools.partial(
    lazy_random_features,
    p=7,
    width=8,
    num_train=20,
    init_scale=2.0,
    step_size=5e-5,
  ),
  "lazy_rf_p5_K16_n10": functools.partial(
    lazy_random_features,
    p=5,
    width=16,
    num_train=10,
    init_scale=3.0,
    step_size=1e-5,
  ),
}


def make_case(name: str, key: PRNGKey, scale: float = 1.0) -> KnownCase:
  """Builds the public case ``name`` (a key of ``CASES``).

  Args:
    name: case name, e.g. ``"normal_crossing_12"``.
    key: PRNG key for whatever the case draws (unused by deterministic ones).
    scale: multiplies the number of draws.

  Returns:
    The case.

  Raises:
    ValueError: if name is not a key of ``CASES``, or scale is not a finite
      number > 0.
  """
  if name not in CASES:
    raise ValueError(f"name={name!r} is invalid: must be one of {tuple(CASES)}")
  check(
    is_real(scale) and scale > 0, "scale", scale, "must be a finite number > 0"
  )
  return CASES[name](key, scale=scale)


def all_cases(key: PRNGKey, scale: float = 1.0) -> list[KnownCase]:
  """The public known cases of ``CASES``; ``scale`` multiplies the draws.

  Args:
    key: PRNG key, split into one key per case (in ``CASES`` order).
    scale: multiplies the number of draws.

  Returns:
    One ``KnownCase`` per entry of ``CASES``.
  """
  keys = jax.random.split(key, len(CASES))
  return [make_case(name, k, scale) for name, k in zip(CASES, keys)]


@dataclasses.dataclass(frozen=True)
class LinearGaussian:
  """Linear regression, squared-error losses: a Gaussian localized posterior.

  With per-example losses ``l_i(w) = (x_i.w - y_i)^2 / 2`` and ``L_n`` their
  mean, the localized tempered posterior ``exp(-nβ L_n(w) - γ/2 |w - w*|^2)``
  is Gaussian with precision ``P = β XᵀX + γI`` (β = nβ / n) and mean ``P⁻¹(β
  Xᵀy + γ w*)``; masked coordinates stay at w* and the rest follow the
  conditional Gaussian. Full-batch SGLD (the unadjusted Langevin algorithm)
  keeps the mean and has the stationary covariance ``(P - ε P² / 4)⁻¹``
  exactly, so these closed forms hold for the chains themselves, not only as
  ε -> 0. Every loss is a quadratic of a Gaussian, so their covariances follow
  from Isserlis' theorem: ``Cov(l_i, l_j) = S_ij² / 2 + m_i m_j S_ij`` with
  residual means ``m = Xμ - y`` and covariances ``S = XΣXᵀ``.

  Attributes:
    x_train, y_train: (n, d), (n,) the data the chains sample.
    x_probe, y_probe: (m, d), (m,) held-out examples.
    anchors: (P, d) localization centres w*.
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_probe: np.ndarray
  y_probe: np.ndarray
  anchors: np.ndarray

  @staticmethod
  def loss_fn(w, batch):
    """Mean loss of a batch ``(x, y)`` (``(x, y, weights)``: weighted sum)."""
    if len(batch) == 3:
      return jnp.sum(batch[2] * LinearGaussian.per_example_loss_fn(w, batch))
    return jnp.mean(LinearGaussian.per_example_loss_fn(w, batch))

  @staticmethod
  def per_example_loss_fn(w, batch):
    """``(x_i.w - y_i)^2 / 2`` of each example of ``(x, y[, weights])``."""
    return 0.5 * jnp.square(batch[0] @ w - batch[1])

  def posterior(
    self,
    anchor: np.ndarray,
    nbeta: float,
    localization: float,
    step_size: float = 0.0,
    mask: Optional[np.ndarray] = None,
    probe_weight: float = 0.0,
  ) -> tuple[np.ndarray, np.ndarray]:
    """Stationary (mean, covariance) of full-batch SGLD at step ``step_size``
    (0: the exact posterior), float64.

    ``probe_weight`` h samples ``(1 - h) L_n + h L_probe`` instead of L_n
    (the data shifted towards the probe set).
    """
    x = np.concatenate([self.x_train, self.x_probe]).astype(np.float64)
    y = np.concatenate([self.y_train, self.y_probe]).astype(np.float64)
    n, m = len(self.y_train), len(self.y_probe)
    weight = (
      np.concatenate(
        [np.full(n, (1 - probe_weight) / n), np.full(m, probe_weight / m)]
      )
      * nbeta
    )
    d = x.shape[1]
    moving = np.ones(d, bool) if mask is None else np.asarray(mask, bool)
    w_star = np.asarray(anchor, np.float64)
    x_m = x[:, moving]
    resid = y - x[:, ~moving] @ w_star[~moving]
    prec = (x_m.T * weight) @ x_m + localization * np.eye(moving.sum())
    mean = w_star.copy()
    mean[moving] = np.linalg.solve(
      prec, (x_m.T * weight) @ resid + localization * w_star[moving]
    )
    cov = np.zeros((d, d))
    cov[np.ix_(moving, moving)] = np.linalg.inv(
      prec - step_size * prec @ prec / 4
    )
    return mean, cov

  def loss_moments(
    self, mean: np.ndarray, cov: np.ndarray
  ) -> tuple[np.ndarray, np.ndarray]:
    """(E[l], Cov(l)) of the train then probe losses under N(mean, cov)."""
    x = np.concatenate([self.x_train, self.x_probe]).astype(np.float64)
    y = np.concatenate([self.y_train, self.y_probe]).astype(np.float64)
    m, s = x @ mean - y, x @ cov @ x.T
    return 0.5 * (m**2 + np.diag(s)), 0.5 * s**2 + np.outer(m, m) * s

  def bif(
    self,
    anchor,
    nbeta,
    localization,
    step_size=0.0,
    mask=None,
    kind: str = "covariance",
  ) -> np.ndarray:
    """Exact ``(n, m)`` train × probe BIF (covariance or correlation)."""
    _, cov_l = self.loss_moments(
      *self.posterior(anchor, nbeta, localization, step_size, mask)
    )
    n = len(self.y_train)
    if kind == "correlation":
      sd = np.sqrt(np.diag(cov_l))
      cov_l = cov_l / np.outer(sd, sd)
    return cov_l[:n, n:]

  def susceptibility(
    self,
    anchor,
    nbeta,
    localization,
    step_size=0.0,
    mask=None,
    center: str = "full",
  ) -> np.ndarray:
    """Exact ``(m,)`` ``chi_A(j)`` per probe example (``slt_jax.llc.influence``'s
    definition), A the coordinates ``mask`` moves."""
    n, m = len(self.y_train), len(self.y_probe)
    mean_a, cov_a = self.loss_moments(
      *self.posterior(anchor, nbeta, localization, step_size, mask)
    )
    mean_f, _ = self.loss_moments(
      *self.posterior(anchor, nbeta, localization, step_size)
    )
    init = self.loss_moments(
      np.asarray(anchor, np.float64), np.zeros((len(anchor),) * 2)
    )[0][:n].mean()
    a = np.concatenate([np.full(n, 1.0 / n), np.zeros(m)])
    shift = a[None, :] - np.concatenate([np.zeros((m, n)), np.eye(m)], 1)
    chi = shift @ cov_a @ a  # Cov_A(phi, L_n - l_j)
    if center == "full":
      chi = chi + (a @ mean_a - init) * (shift @ mean_a - shift @ mean_f)
    return chi


def linear_gaussian(
  key: PRNGKey,
  d: int = 4,
  num_train: int = 24,
  num_probe: int = 6,
  num_anchors: int = 2,
  noise: float = 0.5,
  offset: float = 0.3,
) -> LinearGaussian:
  """A ``LinearGaussian`` with N(0, 1) inputs, ``y = x.w0 + noise``, and
  anchors ``w0 + offset * N(0, I)`` (off the least-squares point, so that the
  residual means, hence the ``m_i m_j S_ij`` terms, are not zero)."""
  keys = jax.random.split(key, 5)
  w0 = np.asarray(jax.random.normal(keys[0], (d,)), np.float64)
  x = np.asarray(jax.random.normal(keys[1], (num_train + num_probe, d)))
  y = x @ w0 + noise * np.asarray(
    jax.random.normal(keys[2], (num_train + num_probe,))
  )
  anchors = w0 + offset * np.asarray(
    jax.random.normal(keys[3], (num_anchors, d))
  )
  f32 = lambda a: np.asarray(a, np.float32)
  return LinearGaussian(
    f32(x[:num_train]),
    f32(y[:num_train]),
    f32(x[num_train:]),
    f32(y[num_train:]),
    f32(anchors),
  )


def deep_linear_factors(
  key: PRNGKey, widths: tuple[int, ...], rank: int
) -> tuple[jax.Array, ...]:
  """Factors ``W_1..W_L`` (``W_i``: ``(H_i, H_{i-1})``) whose product has rank
  ``rank``, each of rank ``rank`` with all its nonzero singular values 1.

  ``W_i = Q_i R_i Q_{i-1}^T`` with ``Q_i`` ``(H_i, r)`` orthonormal columns
  and ``R_i`` ``(r, r)`` orthogonal, all random, so the product is ``Q_L (R_L
  ... R_1) Q_0^T``: r singular values 1. Every factor having the least rank
  the product allows places w* on the deepest stratum of the set of true
  parameters, where the local learning coefficient is the global one (any
  true point with larger-rank factors has the minimal-rank ones in the
  closure of its orbit under the rescalings of the hidden layers).

  Args:
    key: PRNG key.
    widths: ``(H_0, ..., H_L)``.
    rank: r, ``0 <= r <= min(widths)`` (0 gives zero matrices).

  Returns:
    The L factors, float32.
  """
  key_bases, key_rotations = jax.random.split(key)
  bases = [
    jnp.linalg.qr(jax.random.normal(k, (h, rank)))[0]
    for k, h in zip(jax.random.split(key_bases, len(widths)), widths)
  ]
  rotations = [
    jnp.linalg.qr(jax.random.normal(k, (rank, rank)))[0]
    for k in jax.random.split(key_rotations, len(widths) - 1)
  ]
  return tuple(
    bases[i + 1] @ rotations[i] @ bases[i].T for i in range(len(widths) - 1)
  )


def deep_linear_predict(params: tuple, x_BxH: jax.Array) -> jax.Array:
  """``W_L ... W_1 x`` for each row of ``x_BxH`` ``(B, H_0)``: ``(B, H_L)``."""
  for w in params:
    x_BxH = x_BxH @ w.T
  return x_BxH


def deep_linear_loss(params: tuple, batch: dict) -> jax.Array:
  """``(1/2) mean_b |W_L ... W_1 x_b - y_b|^2`` over a batch ``{"x", "y"}``
  of shapes ``(B, H_0)``, ``(B, H_L)``."""
  resid_BxH = deep_linear_predict(params, batch["x"]) - batch["y"]
  return 0.5 * jnp.mean(jnp.sum(jnp.square(resid_BxH), -1))


def deep_linear(
  key: PRNGKey,
  widths: tuple[int, ...],
  rank: int,
  num_examples: int,
  *,
  input_scale: float = 1.0,
  noise_std: float = 1.0,
  step_size: Optional[float] = None,
  localization: float = 2.0,
  scale: float = 1.0,
) -> KnownCase:
  """Deep linear network ``x -> W_L ... W_1 x`` at a true point of rank r.

  Data ``x ~ N(0, input_scale^2 I)``, ``y = W* x + noise_std N(0, I)`` with
  ``W* = W_L* ... W_1*`` from ``deep_linear_factors``; the loss is
  ``deep_linear_loss`` (with ``noise_std = 1`` the Gaussian negative
  log-likelihood up to a constant). The truth is Aoyagi's coefficient
  (``theory.deep_linear_llc``), with its multiplicity.

  Args:
    key: PRNG key, split for the factors, the inputs and the noise.
    widths: ``(H_0, ..., H_L)``, at least two positive integers.
    rank: rank r of the true map, ``0 <= r <= min(widths)``.
    num_examples: n >= 2; nbeta is ``n / ln n`` and the minibatch
      ``min(n, 500)``.
    input_scale: standard deviation of the inputs (the loss's curvature
      grows as its square).
    noise_std: standard deviation of the label noise (0: noiseless).
    step_size: SGLD step size; None: ``0.03 / (nbeta input_scale^2)``
      (2.8e-5 at n = 10,000 and unit inputs), which keeps the step's bias
      small where the chains go.
    localization: gamma. Smaller gamma lets the chains relax more slowly
      along the flat directions of the true set (about ``2 / (step_size
      gamma)`` steps); larger gamma confines the singular directions and
      lowers the estimate.
    scale: multiplies the number of draws.

  Returns:
    The case; ``params`` is the tuple of factors, ``data`` is ``{"x": (n,
    H_0), "y": (n, H_L)}``.

  Raises:
    ValueError: if widths or rank are invalid (see
      ``theory.deep_linear_llc``), num_examples is not an integer >= 2, or
      input_scale <= 0 or noise_std < 0.
  """
  true_llc, multiplicity = theory.deep_linear_llc(widths, rank)
  check(
    isinstance(num_examples, (int, np.integer)) and num_examples >= 2,
    "num_examples",
    num_examples,
    "must be an integer >= 2",
  )
  check(
    is_real(input_scale) and input_scale > 0,
    "input_scale",
    input_scale,
    "must be a finite number > 0",
  )
  check(
    is_real(noise_std) and noise_std >= 0,
    "noise_std",
    noise_std,
    "must be a finite number >= 0",
  )
  widths = tuple(int(h) for h in widths)
  key_factors, key_x, key_noise = jax.random.split(key, 3)
  params = deep_linear_factors(key_factors, widths, rank)
  x_NxH = input_scale * jax.random.normal(key_x, (num_examples, widths[0]))
  pred_NxH = deep_linear_predict(params, x_NxH)
  y_NxH = pred_NxH + noise_std * (
    jax.random.normal(key_noise, (num_examples, widths[-1]))
  )
  if step_size is None:
    step_size = 0.03 * np.log(num_examples) / (num_examples * input_scale**2)
  cfg = SGLDConfig(
    step_size=float(step_size),
    nbeta="n_log_n",
    localization=localization,
    num_chains=4,
    num_draws=int(20_000 * scale),
    num_burnin=10_000,
    batch_size=min(num_examples, 500),
  )
  return KnownCase(
    name=f"dln_{'_'.join(map(str, widths))}_r{rank}",
    loss_fn=deep_linear_loss,
    params=params,
    data={"x": x_NxH, "y": y_NxH},
    true_llc=true_llc,
    cfg=cfg,
    rel_tol=0.15,
    multiplicity=multiplicity,
  )
