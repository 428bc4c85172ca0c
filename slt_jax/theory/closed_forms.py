"""Closed-form learning coefficients: host-side Python, no JAX.

The quadratic network is ``f_j(x) = x^T M_j x`` with ``M_j = W^T diag(V_j) W``
(``W`` is (K, d), ``V`` is (m, K)), so each output is a quadratic form in
``D = d (d + 1) / 2`` coefficients. Where the map from parameters to outputs on
the training inputs has locally constant rank ``r``, the loss is (locally) a
regular model in ``r`` effective directions and the local learning coefficient
is ``r / 2``; singular points have smaller values. The closed forms below give
``r`` for generic parameters; ``slt_jax.theory.curvature.jacobian_rank``
measures it.

Every function takes and returns Python ints and floats, checks its
hypotheses and raises ``ValueError`` naming the violated condition and the
offending value (the ``_require`` / ``_check_*`` helpers here, shared by the
numerics modules of ``slt_jax.theory``).

References:
  Cullen et al. (2026), "Grokking as a phase transition between competing
    basins": Thm 4.1 (Gaussian inputs, enough width), Thm 4.2 (Gaussian inputs,
    underparameterised), Thm 5.2 and Cor 5.3 (lazy random features).
  Aoyagi, M. and Watanabe, S. (2005), "Stochastic complexities of reduced rank
    regression in Bayesian estimation", Neural Networks 18(7).
  Watanabe, S. (2009), "Algebraic Geometry and Statistical Learning Theory"
    (normal crossings, regular models).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

from slt_jax.grokking.config import LOSSES

__all__ = [
  "INPUTS",
  "LOSSES",
  "gaussian_rank",
  "gaussian_llc",
  "gaussian_critical_width",
  "PairGraph",
  "pair_graph",
  "modular_rank",
  "modular_llc",
  "lazy_random_features_llc",
  "reduced_rank_regression_llc",
  "normal_crossing_llc",
  "polynomial_potential_llc",
  "isotropic_quadratic_llc",
  "isotropic_quadratic_llc_hat",
]

INPUTS = ("one_hot", "gaussian")


# ----------------------------------------------------------------------------
# Validation helpers.
# ----------------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ValueError(message)


def _check_int(name: str, value: Any, minimum: int) -> int:
  ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
  _require(ok, f"{name}={value!r} is invalid: must be an integer")
  _require(
    value >= minimum, f"{name}={value!r} is invalid: must be >= {minimum}"
  )
  return int(value)


def _as_real(name: str, value: Any) -> float:
  ok = np.ndim(value) == 0 and not isinstance(value, (str, bool))
  if ok:
    try:
      x = float(value)
    except (TypeError, ValueError):
      ok = False
  _require(
    ok and np.isfinite(x),
    f"{name}={value!r} is invalid: must be a finite real number",
  )
  return x


def _check_positive(name: str, value: Any) -> float:
  x = _as_real(name, value)
  _require(x > 0, f"{name}={value!r} is invalid: must be > 0")
  return x


def _check_nonnegative(name: str, value: Any) -> float:
  x = _as_real(name, value)
  _require(x >= 0, f"{name}={value!r} is invalid: must be >= 0")
  return x


def _check_exponents(name: str, k: Sequence[int], minimum: int) -> list[int]:
  ks = list(k)
  _require(len(ks) >= 1, f"{name}={ks!r} is invalid: must be non-empty")
  for i, ki in enumerate(ks):
    _check_int(f"{name}[{i}]", ki, minimum)
  return [int(ki) for ki in ks]


# ----------------------------------------------------------------------------
# Quadratic network with Gaussian inputs (Thm 4.1, Thm 4.2).
# ----------------------------------------------------------------------------


def _is_defective(m: int, d: int, k: int) -> bool:
  """The (m, d, K) triples whose rank is one below the dimension count.

  (3, 2k + 2, 3k + 2) for k >= 1 and (5, 4, 6); k = 0, i.e. (3, 2, 2), is not
  defective (checked numerically).
  """
  if (m, d, k) == (5, 4, 6):
    return True
  return m == 3 and d >= 4 and d % 2 == 0 and k == 3 * (d - 2) // 2 + 2


def gaussian_rank(d: int, m: int, K: int) -> int:
  """Generic rank of the quadratic network under Gaussian inputs.

  The outputs determine the m symmetric matrices ``M_j = W^T diag(V_j) W``,
  so the rank is at most ``m D`` with ``D = d (d + 1) / 2``.

  * m = 1 (Thm 4.2): ``r = K d - K (K - 1) / 2`` for ``K <= d`` (one rescaling
    per neuron plus the ``O(K+, K-)`` mixing that preserves ``diag(v)``), and
    ``r = D`` for ``K >= d`` (Thm 4.1, ``K* = d``).
  * m >= 2 (Thm 4.1, 4.2): ``r = min(K (d + m - 1), m D, K (m + D - K))``, the
    last term only when ``K <= m`` (the m x D flattening has rank <= K), and
    one less at the defective triples ``(m, d, K) = (3, 2k + 2, 3k + 2)``,
    k >= 1, and ``(5, 4, 6)``. The published statement lets the family start at k = 0, but
    ``(3, 2, 2)`` has the expected rank 8 (float64 Jacobian, gap ~1e14: a
    2-plane in the 3-space of 2 x 2 symmetric matrices meets the rank-1 cone
    in finitely many points, so the fibres are finite modulo rescaling).

  Args:
    d: input dimension (>= 1).
    m: number of outputs (>= 1).
    K: hidden width (>= 1).

  Returns:
    The rank r (a Python int).

  Raises:
    ValueError: if d, m or K is not an integer >= 1.

  References:
    Cullen et al. (2026), Thm 4.1 and Thm 4.2.

  Example:
    >>> gaussian_rank(d=3, m=1, K=2), gaussian_rank(d=3, m=1, K=5)
    (5, 6)
    >>> gaussian_rank(d=4, m=3, K=5)  # defective triple (3, 4, 5): 30 - 1
    29
  """
  d = _check_int("d", d, 1)
  m = _check_int("m", m, 1)
  K = _check_int("K", K, 1)
  dim = d * (d + 1) // 2
  if m == 1:
    return K * d - K * (K - 1) // 2 if K <= d else dim
  r = min(K * (d + m - 1), m * dim)
  if K <= m:
    r = min(r, K * (m + dim - K))
  if _is_defective(m, d, K):
    r -= 1
  return r


def gaussian_llc(d: int, m: int, K: int) -> float:
  """Learning coefficient ``gaussian_rank(d, m, K) / 2`` (Thm 4.1, 4.2).

  Args:
    d: input dimension (>= 1).
    m: number of outputs (>= 1).
    K: hidden width (>= 1).

  Returns:
    lambda = r / 2; ``m D / 2`` once the width is large enough.

  Raises:
    ValueError: if d, m or K is not an integer >= 1.

  References:
    Cullen et al. (2026), Thm 4.1 and Thm 4.2.

  Example:
    >>> gaussian_llc(d=4, m=2, K=20)  # m D / 2 = 2 * 10 / 2
    10.0
  """
  return gaussian_rank(d, m, K) / 2


def gaussian_critical_width(d: int, m: int) -> int:
  """Smallest width K whose generic rank is full, ``m D``.

  Thm 4.1 states ``K* = ceil(m D / (d + m - 1))`` for m >= 2 and
  ``K* = d`` for m = 1. The count ``K (d + m - 1) >= m D`` is necessary but
  not sufficient: when ``K* < min(m, D)`` the flattening bound
  ``K (m + D - K) < m D`` still binds, and at the defective triples the rank
  is one short. This function returns the smallest K for which
  ``gaussian_rank`` reaches ``m D``, which equals the ceiling formula
  whenever neither obstruction occurs.

  Args:
    d: input dimension (>= 1).
    m: number of outputs (>= 1).

  Returns:
    The critical width (a Python int).

  Raises:
    ValueError: if d or m is not an integer >= 1.

  References:
    Cullen et al. (2026), Thm 4.1.

  Example:
    >>> gaussian_critical_width(d=4, m=1), gaussian_critical_width(d=3, m=2)
    (4, 3)
  """
  d = _check_int("d", d, 1)
  m = _check_int("m", m, 1)
  full = m * d * (d + 1) // 2
  K = 1
  while gaussian_rank(d, m, K) < full:
    K += 1
  return K


# ----------------------------------------------------------------------------
# Modular arithmetic with one-hot inputs.
# ----------------------------------------------------------------------------


class PairGraph(NamedTuple):
  """The bipartite a-b graph of a set of training pairs.

  Attributes:
    num_pairs: n, the number of (distinct) training pairs.
    num_a: n_a, distinct first residues seen.
    num_b: n_b, distinct second residues seen.
    num_components: c, connected components of the graph whose vertices are
      the seen a and b values and whose edges are the pairs.
    shift_rank: ``s = n_a + n_b - c``, the dimension of the space of hidden
      pre-activations ``(W[k, a_i] + W[k, p + b_i])_i`` of one neuron.
  """

  num_pairs: int
  num_a: int
  num_b: int
  num_components: int
  shift_rank: int


def pair_graph(p: int, train_pairs: Any) -> PairGraph:
  """Counts of the bipartite a-b training graph.

  Args:
    p: modulus (>= 2); residues lie in [0, p).
    train_pairs: (n, 2) integer array-like of distinct pairs ``(a, b)``.

  Returns:
    PairGraph with ``s = n_a + n_b - c``.

  Raises:
    ValueError: if p < 2, train_pairs is not a non-empty (n, 2) integer array
      with entries in [0, p), or it has duplicate rows.

  Example:
    >>> pair_graph(3, [[0, 0], [1, 1]])
    PairGraph(num_pairs=2, num_a=2, num_b=2, num_components=2, shift_rank=2)
  """
  p = _check_int("p", p, 2)
  pairs = np.asarray(train_pairs)
  _require(
    pairs.ndim == 2 and pairs.shape[1] == 2 and pairs.shape[0] >= 1,
    f"train_pairs.shape={pairs.shape} is invalid: must be (n, 2) with n >= 1",
  )
  _require(
    np.issubdtype(pairs.dtype, np.integer),
    f"train_pairs.dtype={pairs.dtype} is invalid: must be integer",
  )
  _require(
    pairs.min() >= 0 and pairs.max() < p,
    f"train_pairs range [{pairs.min()}, {pairs.max()}] is invalid: "
    f"residues must lie in [0, p) = [0, {p})",
  )
  n_unique = len({(int(a), int(b)) for a, b in pairs})
  _require(
    n_unique == pairs.shape[0],
    f"train_pairs has {pairs.shape[0] - n_unique} duplicate rows: "
    "pairs must be distinct",
  )
  # Union-find over vertices a in [0, p) and b in [p, 2p).
  parent = list(range(2 * p))

  def find(i: int) -> int:
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i

  for a, b in pairs:
    ra, rb = find(int(a)), find(p + int(b))
    if ra != rb:
      parent[ra] = rb
  seen = set(int(a) for a in pairs[:, 0]) | set(p + int(b) for b in pairs[:, 1])
  num_a = len(set(int(a) for a in pairs[:, 0]))
  num_b = len(set(int(b) for b in pairs[:, 1]))
  num_components = len({find(v) for v in seen})
  return PairGraph(
    int(pairs.shape[0]),
    num_a,
    num_b,
    num_components,
    num_a + num_b - num_components,
  )


def modular_rank(p: int, K: int, train_pairs: Any, loss: str = "mse") -> int:
  """Generic rank of the quadratic network on one-hot modular pairs.

  Inputs are ``x = [e_a ; e_b]`` (d = 2p), outputs m = p, and n training
  pairs. Each neuron has a rescaling symmetry and exact shift symmetries
  (``W[k, :p] += t``, ``W[k, p:] -= t`` on each connected component of the
  bipartite a-b training graph), leaving ``s + m - 1`` effective parameters,
  ``s = n_a + n_b - c`` (2p - 1 on the full grid). The output matrix is
  n x m of rank <= K, whence

    ``r = min(K (s + m - 1), n m, K (m + n - K) if K <= min(m, n))``.

  Losses see the outputs through a projection, which removes directions:

  * ``mse``: r as above.
  * ``centered_mse`` (residuals centered over the n examples): the loss sees
    the centered output matrix, (n - 1) x m effective rows of rank <= K, so
    ``min(K (s + m - 1), (n - 1) m, K (m + n - 1 - K) if K <= min(m, n - 1))``.
    An earlier statement writes ``r - max(0, r + m - n m)`` (0 before saturation, m at
    it); the two agree except where the flattening term binds, i.e.
    ``n - s < K <= min(m, n - 1)`` (few cycles in the training graph),
    where that form is K too high (checked against the float64 Jacobian
    rank).
  * ``cross_entropy`` (softmax is invariant to adding a constant to all
    logits of one example, so each neuron loses one more direction: adding
    ``c 1`` to ``V[:, k]``): the same count with m - 1 outputs,
    ``min(K (s + m - 2), n (m - 1), K (m - 1 + n - K) if K <= min(m - 1, n))``,
    which is ``K (3p - 3)`` generically (full grid, unsaturated). This is the
    rank of the Fisher information (the softmax Jacobian has rank m - 1).

  Args:
    p: modulus (>= 2); the number of outputs is m = p.
    K: hidden width (>= 1).
    train_pairs: (n, 2) integer array-like of distinct pairs in [0, p).
    loss: ``mse``, ``centered_mse`` or ``cross_entropy``.

  Returns:
    The rank r (a Python int).

  Raises:
    ValueError: if p, K or train_pairs are invalid or loss is unknown.

  References:
    Cullen et al. (2026), Sec. 4 (modular arithmetic, one-hot inputs).

  Example:
    >>> import itertools
    >>> grid = list(itertools.product(range(5), range(5)))
    >>> modular_rank(5, 2, grid), modular_rank(5, 2, grid, "cross_entropy")
    (26, 24)
  """
  _require(loss in LOSSES, f"loss={loss!r} is invalid: must be one of {LOSSES}")
  K = _check_int("K", K, 1)
  graph = pair_graph(p, train_pairs)
  s = graph.shift_rank
  # Rows and columns of the output matrix the loss sees.
  n = graph.num_pairs - 1 if loss == "centered_mse" else graph.num_pairs
  m = p - 1 if loss == "cross_entropy" else p
  r = min(K * (s + m - 1), n * m)
  if K <= min(m, n):
    r = min(r, K * (m + n - K))
  return r


def modular_llc(p: int, K: int, train_pairs: Any, loss: str = "mse") -> float:
  """Learning coefficient ``modular_rank(p, K, train_pairs, loss) / 2``.

  Args:
    p: modulus (>= 2); the number of outputs is m = p.
    K: hidden width (>= 1).
    train_pairs: (n, 2) integer array-like of distinct pairs in [0, p).
    loss: ``mse``, ``centered_mse`` or ``cross_entropy``.

  Returns:
    lambda = r / 2 (``K (3p - 2) / 2`` for mse on the full grid, unsaturated).

  Raises:
    ValueError: as ``modular_rank``.

  References:
    Cullen et al. (2026), Sec. 4.

  Example:
    >>> import itertools
    >>> modular_llc(7, 3, list(itertools.product(range(7), range(7))))
    28.5
  """
  return modular_rank(p, K, train_pairs, loss) / 2


# ----------------------------------------------------------------------------
# Lazy regime (Thm 5.2, Cor 5.3).
# ----------------------------------------------------------------------------


def lazy_random_features_llc(
  m: int, K: int, n: int, inputs: str = "one_hot", d: Optional[int] = None
) -> float:
  """Learning coefficient when only the readout V is trained.

  With W frozen at a generic point, ``f(x) = V (W x)^2`` is linear in V with
  feature matrix ``Phi_ik = (w_k . x_i)^2`` (n x K). Each of the m outputs
  contributes ``rank(Phi)`` regular directions:

  * one-hot pairs: the n matrices ``x_i x_i^T`` are linearly independent, so
    ``rank(Phi) = min(K, n)`` and ``lambda = m min(K, n) / 2`` (Thm 5.2);
  * Gaussian inputs in d dimensions: ``x x^T`` lives in a D = d (d + 1) / 2
    dimensional space, ``lambda = m min(K, n, D) / 2`` (Cor 5.3).

  Args:
    m: number of outputs (>= 1).
    K: hidden width (>= 1).
    n: number of training inputs (>= 1).
    inputs: ``one_hot`` or ``gaussian``.
    d: input dimension (>= 1), required for ``gaussian``.

  Returns:
    lambda.

  Raises:
    ValueError: if an argument is out of range, inputs is unknown, or d is
      missing for Gaussian inputs.

  References:
    Cullen et al. (2026), Thm 5.2 and Cor 5.3.

  Example:
    >>> lazy_random_features_llc(m=5, K=8, n=6)
    15.0
    >>> lazy_random_features_llc(m=2, K=8, n=20, inputs="gaussian", d=3)
    6.0
  """
  m = _check_int("m", m, 1)
  K = _check_int("K", K, 1)
  n = _check_int("n", n, 1)
  _require(
    inputs in INPUTS, f"inputs={inputs!r} is invalid: must be one of {INPUTS}"
  )
  if inputs == "one_hot":
    _require(d is None, f"d={d!r} is invalid: must be None for one-hot inputs")
    return m * min(K, n) / 2
  _require(d is not None, "d=None is invalid: Gaussian inputs need d >= 1")
  d = _check_int("d", d, 1)
  return m * min(K, n, d * (d + 1) // 2) / 2


# ----------------------------------------------------------------------------
# Reduced-rank regression and toy landscapes.
# ----------------------------------------------------------------------------


def reduced_rank_regression_llc(M: int, H: int, N: int, r: int) -> float:
  """Learning coefficient of reduced-rank regression (Aoyagi-Watanabe).

  The model is ``y = B A x`` with A (H, M), B (N, H), and the true map has
  rank r. Exactly one case applies:

  * ``N + r <= M + H``, ``M + r <= N + H``, ``H + r <= M + N``:
    ``[2 (H + r)(M + N) - (M - N)^2 - (H + r)^2] / 8``, plus ``1 / 8`` when
    ``M + H + N + r`` is odd;
  * ``M + H < N + r``: ``(H M - H r + N r) / 2``;
  * ``N + H < M + r``: ``(H N - H r + M r) / 2``;
  * ``M + N < H + r``: ``M N / 2`` (regular).

  Args:
    M: input dimension (>= 1).
    H: hidden dimension (>= 1).
    N: output dimension (>= 1).
    r: rank of the true map, ``0 <= r <= min(M, H, N)``.

  Returns:
    lambda (a float, an exact multiple of 1/8).

  Raises:
    ValueError: if a dimension is < 1 or r is outside [0, min(M, H, N)].

  References:
    Aoyagi, M. and Watanabe, S. (2005), Main Theorem.

  Example:
    >>> reduced_rank_regression_llc(5, 3, 5, 0)
    6.5
  """
  M = _check_int("M", M, 1)
  H = _check_int("H", H, 1)
  N = _check_int("N", N, 1)
  r = _check_int("r", r, 0)
  _require(
    r <= min(M, H, N),
    f"r={r} is invalid: must satisfy 0 <= r <= min(M, H, N) = {min(M, H, N)}",
  )
  if M + H < N + r:
    return (H * M - H * r + N * r) / 2
  if N + H < M + r:
    return (H * N - H * r + M * r) / 2
  if M + N < H + r:
    return M * N / 2
  numerator = 2 * (H + r) * (M + N) - (M - N) ** 2 - (H + r) ** 2
  if (M + H + N + r) % 2 == 1:
    numerator += 1
  return numerator / 8


def normal_crossing_llc(k: Sequence[int]) -> float:
  """Learning coefficient of ``f(x; w) = x prod_i w_i^{k_i}`` at w = 0.

  The KL divergence is ``K(w) = c prod_i w_i^{2 k_i}``, already in normal
  crossing form, with a uniform prior; ``lambda = min_i 1 / (2 k_i) =
  1 / (2 max_i k_i)``.

  Args:
    k: exponents k_i (integers >= 0, at least one >= 1).

  Returns:
    lambda.

  Raises:
    ValueError: if k is empty, has a negative or non-integer entry, or is
      all zero.

  References:
    Watanabe (2009), Thm 6.1 (normal crossings); Cullen et al. (2026), toy
    landscapes.

  Example:
    >>> normal_crossing_llc([1, 1]), normal_crossing_llc([2, 3])
    (0.5, 0.16666666666666666)
  """
  ks = _check_exponents("k", k, 0)
  _require(max(ks) >= 1, f"k={ks!r} is invalid: needs some k_i >= 1")
  return 1 / (2 * max(ks))


def polynomial_potential_llc(k: Sequence[int]) -> float:
  """Learning coefficient of ``K(w) = sum_i w_i^{2 k_i}`` at w = 0.

  The coordinates decouple; each contributes ``1 / (2 k_i)`` (a quadratic
  direction 1/2, a quartic 1/4, ...).

  Args:
    k: exponents k_i (integers >= 1).

  Returns:
    ``sum_i 1 / (2 k_i)``.

  Raises:
    ValueError: if k is empty or has an entry that is not an integer >= 1.

  References:
    Watanabe (2009); Cullen et al. (2026), toy landscapes.

  Example:
    >>> polynomial_potential_llc([1, 2])
    0.75
  """
  ks = _check_exponents("k", k, 1)
  return sum(1 / (2 * ki) for ki in ks)


def isotropic_quadratic_llc(d: int) -> float:
  """Learning coefficient ``d / 2`` of ``L(w) = 0.5 ||w||^2`` (regular).

  Args:
    d: dimension (>= 1).

  Returns:
    d / 2.

  Raises:
    ValueError: if d is not an integer >= 1.

  References:
    Watanabe (2009), regular models.

  Example:
    >>> isotropic_quadratic_llc(3)
    1.5
  """
  return _check_int("d", d, 1) / 2


def isotropic_quadratic_llc_hat(d: int, nbeta: float, gamma: float) -> float:
  """Expected localized SGLD estimate for ``L(w) = 0.5 ||w||^2``.

  The localized target ``exp(-nbeta L(w) - gamma/2 ||w||^2)`` is Gaussian
  with variance ``1 / (nbeta + gamma)`` per coordinate, so
  ``E[nbeta (L(w) - L(0))] = (d / 2) nbeta / (nbeta + gamma)``.

  Args:
    d: dimension (>= 1).
    nbeta: n times the inverse temperature (> 0).
    gamma: localization strength (>= 0).

  Returns:
    ``(d / 2) nbeta / (nbeta + gamma)``.

  Raises:
    ValueError: if d < 1, nbeta <= 0 or gamma < 0.

  Example:
    >>> isotropic_quadratic_llc_hat(4, nbeta=3.0, gamma=1.0)
    1.5
  """
  d = _check_int("d", d, 1)
  nbeta = _check_positive("nbeta", nbeta)
  gamma = _check_nonnegative("gamma", gamma)
  return d / 2 * nbeta / (nbeta + gamma)
