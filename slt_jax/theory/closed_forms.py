"""Closed-form learning coefficients and the numerics that check them.

The quadratic network is ``f_j(x) = x^T M_j x`` with ``M_j = W^T diag(V_j) W``
(``W`` is (K, d), ``V`` is (m, K)), so each output is a quadratic form in
``D = d (d + 1) / 2`` coefficients. Where the map from parameters to outputs on
the training inputs has locally constant rank ``r``, the loss is (locally) a
regular model in ``r`` effective directions and the local learning coefficient
is ``r / 2``; singular points have smaller values. The closed forms below give
``r`` for generic parameters; ``jacobian_rank`` measures it.

Closed forms are host-side Python (ints and floats); numerics run in JAX with
float64 enabled only inside the function (``jax.enable_x64``) and return NumPy.
Every function checks its hypotheses and raises ``ValueError`` naming the
violated condition and the offending value.

References:
  Cullen et al. (2026), "Grokking as a phase transition between competing
    basins": Thm 4.1 (Gaussian inputs, enough width), Thm 4.2 (Gaussian inputs,
    underparameterised), Thm 5.1 (NTK / linearised model), Thm 5.2 and Cor 5.3
    (lazy random features).
  Aoyagi, M. and Watanabe, S. (2005), "Stochastic complexities of reduced rank
    regression in Bayesian estimation", Neural Networks 18(7).
  Watanabe, S. (2009), "Algebraic Geometry and Statistical Learning Theory"
    (normal crossings, regular models).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np

from slt_jax.types import ArrayLikeTree, ArrayTree, PRNGKey

LOSSES = ("mse", "centered_mse", "cross_entropy")
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
  _require(value >= minimum,
           f"{name}={value!r} is invalid: must be >= {minimum}")
  return int(value)


def _as_real(name: str, value: Any) -> float:
  ok = np.ndim(value) == 0 and not isinstance(value, (str, bool))
  if ok:
    try:
      x = float(value)
    except (TypeError, ValueError):
      ok = False
  _require(ok and np.isfinite(x), f"{name}={value!r} is invalid: must be a "
           "finite real number")
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
    k >= 1, and ``(5, 4, 6)``. SPEC §3 lets the family start at k = 0, but
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

  SPEC/Thm 4.1 state ``K* = ceil(m D / (d + m - 1))`` for m >= 2 and
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


def quadratic_net_outputs(params: ArrayTree, x_NxD: jax.Array) -> jax.Array:
  """Outputs ``f(x) = ((x W^T)^2) V^T`` of the quadratic network.

  Args:
    params: ``{"W": (K, d), "V": (m, K)}``.
    x_NxD: (N, d) inputs.

  Returns:
    (N, m) outputs.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"W": jnp.ones((2, 3)), "V": jnp.ones((4, 2))}
    >>> quadratic_net_outputs(params, jnp.ones((5, 3))).shape
    (5, 4)
  """
  w_KxD, v_MxK = params["W"], params["V"]
  if x_NxD.ndim != 2 or x_NxD.shape[1] != w_KxD.shape[1]:
    raise ValueError(f"x_NxD.shape={x_NxD.shape} is invalid: must be "
                     f"(N, d) with d = W.shape[1] = {w_KxD.shape[1]}")
  if v_MxK.shape[1] != w_KxD.shape[0]:
    raise ValueError(f"V.shape={v_MxK.shape} is invalid: must be (m, K) with "
                     f"K = W.shape[0] = {w_KxD.shape[0]}")
  return jnp.square(x_NxD @ w_KxD.T) @ v_MxK.T


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
  _require(pairs.ndim == 2 and pairs.shape[1] == 2 and pairs.shape[0] >= 1,
           f"train_pairs.shape={pairs.shape} is invalid: must be (n, 2) "
           "with n >= 1")
  _require(np.issubdtype(pairs.dtype, np.integer),
           f"train_pairs.dtype={pairs.dtype} is invalid: must be integer")
  _require(pairs.min() >= 0 and pairs.max() < p,
           f"train_pairs range [{pairs.min()}, {pairs.max()}] is invalid: "
           f"residues must lie in [0, p) = [0, {p})")
  n_unique = len({(int(a), int(b)) for a, b in pairs})
  _require(n_unique == pairs.shape[0],
           f"train_pairs has {pairs.shape[0] - n_unique} duplicate rows: "
           "pairs must be distinct")
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
  return PairGraph(int(pairs.shape[0]), num_a, num_b, num_components,
                   num_a + num_b - num_components)


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
    SPEC §3 writes ``r - max(0, r + m - n m)`` (0 before saturation, m at
    it); the two agree except where the flattening term binds, i.e.
    ``n - s < K <= min(m, n - 1)`` (few cycles in the training graph),
    where the SPEC form is K too high (checked against the float64 Jacobian
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
# Linearised and lazy regimes (Thm 5.1, Thm 5.2, Cor 5.3).
# ----------------------------------------------------------------------------


class RankResult(NamedTuple):
  """Numerical rank of a matrix.

  Attributes:
    rank: number of singular values above the threshold.
    singular_values: (min(rows, cols),) float64, descending.
    gap: ``s[rank - 1] / s[rank]``, the ratio of the smallest singular value
      kept to the largest one dropped (inf when nothing or everything is
      dropped, or the dropped value is 0). A large gap (>> 1e3) means the rank
      is unambiguous.
    threshold: the absolute cut used.
  """

  rank: int
  singular_values: np.ndarray
  gap: float
  threshold: float


def numerical_rank(matrix: Any, rtol: Optional[float] = None) -> RankResult:
  """Rank of a dense matrix from its float64 singular values.

  Args:
    matrix: (R, C) array-like.
    rtol: threshold relative to the largest singular value; default
      ``max(R, C) * eps(float64)`` as ``numpy.linalg.matrix_rank``.

  Returns:
    RankResult.

  Raises:
    ValueError: if matrix is not 2-D or not finite, or rtol is not > 0.

  Example:
    >>> import numpy as np
    >>> numerical_rank(np.outer([1.0, 2.0], [3.0, 4.0, 5.0])).rank
    1
  """
  a = np.asarray(matrix, np.float64)
  _require(a.ndim == 2, f"matrix.ndim={a.ndim} is invalid: must be 2")
  _require(bool(np.all(np.isfinite(a))),
           "matrix is invalid: it has non-finite entries")
  if rtol is None:
    rtol = max(a.shape) * np.finfo(np.float64).eps
  else:
    _check_positive("rtol", rtol)
  s = np.linalg.svd(a, compute_uv=False) if a.size else np.zeros(0)
  s_max = float(s[0]) if s.size else 0.0
  threshold = rtol * s_max
  rank = int(np.sum(s > threshold))
  if 0 < rank < s.size and s[rank] > 0:
    gap = float(s[rank - 1] / s[rank])
  else:
    gap = math.inf
  return RankResult(rank, s, gap, float(threshold))


def ntk_llc(jacobian: Any, rtol: Optional[float] = None) -> float:
  """Learning coefficient of the linearised (NTK) model, ``rank(J) / 2``.

  The linearised model ``f(w*) + J (w - w*)`` is linear in the parameters, so
  it is regular in the ``rank(J)`` directions it can move and flat in the
  others.

  Args:
    jacobian: (outputs, params) Jacobian on the training inputs.
    rtol: relative singular-value threshold (see ``numerical_rank``).

  Returns:
    lambda = numerical rank / 2.

  Raises:
    ValueError: as ``numerical_rank``.

  References:
    Cullen et al. (2026), Thm 5.1.

  Example:
    >>> import numpy as np
    >>> ntk_llc(np.eye(4)[:, :3])
    1.5
  """
  return numerical_rank(jacobian, rtol).rank / 2


def lazy_random_features_llc(m: int, K: int, n: int, inputs: str = "one_hot",
                             d: Optional[int] = None) -> float:
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
  _require(inputs in INPUTS,
           f"inputs={inputs!r} is invalid: must be one of {INPUTS}")
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
  _require(r <= min(M, H, N),
           f"r={r} is invalid: must satisfy 0 <= r <= min(M, H, N) = "
           f"{min(M, H, N)}")
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


# ----------------------------------------------------------------------------
# Numerics: Jacobian rank, Hessian, finite-temperature Laplace prediction.
# ----------------------------------------------------------------------------


def _to_float64(tree: ArrayLikeTree) -> ArrayTree:
  """Casts floating leaves to float64 (call inside ``jax.enable_x64``)."""

  def cast(x):
    x = jnp.asarray(x)
    return x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x

  return jax.tree.map(cast, tree)


def jacobian_rank(fn: Callable[[ArrayTree], jax.Array], params: ArrayLikeTree,
                  rtol: Optional[float] = None) -> RankResult:
  """Numerical rank of the Jacobian of ``fn`` at ``params``, in float64.

  The parameters are cast to float64 and flattened with ``ravel_pytree``;
  the dense Jacobian of ``ravel(fn(params))`` is taken with ``jacfwd`` or
  ``jacrev`` (whichever is cheaper) under ``jax.enable_x64`` and its singular
  values with NumPy. Float64 stays disabled outside this call.

  Args:
    fn: ``fn(params) -> outputs`` (any shape); it must not cast to float32.
    params: parameter pytree (float leaves).
    rtol: relative threshold; default ``max(J.shape) * eps(float64)``.

  Returns:
    RankResult of the (outputs, params) Jacobian.

  Raises:
    ValueError: if params has no leaves or the Jacobian is not finite.

  References:
    Cullen et al. (2026), Sec. 4 (lambda = r / 2 at points of constant rank).

  Example:
    >>> import jax.numpy as jnp
    >>> jacobian_rank(lambda w: jnp.stack([w[0] * w[1], w[0] * w[1]]),
    ...               jnp.array([1.0, 2.0])).rank
    1
  """
  _require(len(jax.tree.leaves(params)) > 0,
           "params is invalid: it has no leaves")
  with jax.enable_x64(True):
    flat_P, unravel = ravel_pytree(_to_float64(params))
    flat_P = flat_P.astype(jnp.float64)

    def flat_fn(f_P):
      return jnp.ravel(fn(unravel(f_P))).astype(jnp.float64)

    num_out = jax.eval_shape(flat_fn, flat_P).size
    jac = jax.jacfwd if flat_P.size <= num_out else jax.jacrev
    j_OxP = np.asarray(jax.jit(jac(flat_fn))(flat_P), np.float64)
  return numerical_rank(j_OxP, rtol)


class QuadraticExpansion(NamedTuple):
  """Second-order Taylor expansion of a loss at a point, in float64.

  Attributes:
    loss: L0, the loss at the point.
    grad: (P,) gradient over the flattened parameters.
    hessian: (P, P) symmetric Hessian.
  """

  loss: float
  grad: np.ndarray
  hessian: np.ndarray


def dense_hessian(loss_fn: Callable[[ArrayTree, Any], jax.Array],
                  params: ArrayLikeTree, batch: Any,
                  max_params: int = 5000) -> QuadraticExpansion:
  """Loss, gradient and dense Hessian over the flattened parameters.

  Computed in float64 (``jax.enable_x64`` inside the call); float leaves of
  params and batch are cast to float64.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    params: parameter pytree.
    batch: data passed unchanged (after the float64 cast) to loss_fn.
    max_params: refuse models with more parameters than this.

  Returns:
    QuadraticExpansion with a symmetrised Hessian.

  Raises:
    ValueError: if the number of parameters exceeds max_params, or the loss,
      gradient or Hessian is not finite.

  Example:
    >>> import jax.numpy as jnp
    >>> q = dense_hessian(lambda w, b: jnp.sum(b * w ** 2), jnp.ones(2),
    ...                   jnp.array([1.0, 3.0]))
    >>> q.hessian.tolist()
    [[2.0, 0.0], [0.0, 6.0]]
  """
  max_params = _check_int("max_params", max_params, 1)
  with jax.enable_x64(True):
    flat_P, unravel = ravel_pytree(_to_float64(params))
    flat_P = flat_P.astype(jnp.float64)
    num_params = int(flat_P.size)
    _require(num_params <= max_params,
             f"number of parameters {num_params} is invalid: exceeds "
             f"max_params={max_params} (dense Hessian)")
    batch64 = _to_float64(batch)

    def flat_loss(f_P):
      return jnp.asarray(loss_fn(unravel(f_P), batch64), jnp.float64)

    loss, grad_P = jax.jit(jax.value_and_grad(flat_loss))(flat_P)
    hess_PxP = jax.jit(jax.hessian(flat_loss))(flat_P)
    loss = float(loss)
    grad_P = np.asarray(grad_P, np.float64)
    hess_PxP = np.asarray(hess_PxP, np.float64)
  _require(np.isfinite(loss) and bool(np.all(np.isfinite(grad_P)))
           and bool(np.all(np.isfinite(hess_PxP))),
           f"loss={loss} is invalid: loss, gradient and Hessian must be finite")
  return QuadraticExpansion(loss, grad_P, 0.5 * (hess_PxP + hess_PxP.T))


def hessian_eigenvalues(loss_fn: Callable[[ArrayTree, Any], jax.Array],
                        params: ArrayLikeTree, batch: Any,
                        max_params: int = 5000) -> np.ndarray:
  """Eigenvalues of the dense float64 Hessian of the loss (small models).

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    params: parameter pytree.
    batch: data for loss_fn.
    max_params: refuse models with more parameters than this.

  Returns:
    (P,) float64 eigenvalues in ascending order.

  Raises:
    ValueError: as ``dense_hessian``.

  Example:
    >>> import jax.numpy as jnp
    >>> hessian_eigenvalues(lambda w, b: 0.5 * w @ b @ w, jnp.zeros(2),
    ...                     jnp.array([[2.0, 1.0], [1.0, 2.0]])).tolist()
    [1.0, 3.0]
  """
  hess_PxP = dense_hessian(loss_fn, params, batch, max_params).hessian
  return np.linalg.eigvalsh(hess_PxP)


class LLCHatPrediction(NamedTuple):
  """Finite-temperature Laplace prediction of the localized SGLD estimate.

  Attributes:
    llc_hat: ``E[nbeta (L(w) - L0)]`` under the Gaussian SGLD target; the sum
      of the two terms below.
    curvature_term: ``(nbeta / 2) tr(H A^{-1})``, the "soft rank"
      ``1/2 sum_i nbeta h_i / (nbeta h_i + gamma)`` (the whole answer when
      the gradient vanishes).
    gradient_term: ``nbeta (g . mu + mu^T H mu / 2)`` from the shift
      ``mu = -nbeta A^{-1} g`` of the target's mean (<= 0).
    min_precision_eigenvalue: smallest eigenvalue of ``A = nbeta H + gamma I``.
  """

  llc_hat: float
  curvature_term: float
  gradient_term: float
  min_precision_eigenvalue: float


def predict_llc_hat(loss_fn: Callable[[ArrayTree, Any], jax.Array],
                    params: ArrayLikeTree, batch: Any, nbeta: float,
                    gamma: float, max_params: int = 5000) -> LLCHatPrediction:
  """Laplace prediction of the localized SGLD LLC estimate at ``params``.

  With ``L(w*+delta) ~ L0 + g . delta + delta^T H delta / 2`` the SGLD target
  ``exp(-nbeta L(w) - gamma |delta|^2 / 2)`` is Gaussian with precision
  ``A = nbeta H + gamma I`` and mean ``mu = -nbeta A^{-1} g``, and

    ``E[nbeta (L(w) - L0)] = nbeta (g . mu + mu^T H mu / 2
                                    + tr(H A^{-1}) / 2)``,

  which for g = 0 is ``1/2 sum_i nbeta h_i / (nbeta h_i + gamma)``: the
  directions with ``h_i >> gamma / nbeta`` count 1/2 each, the rest less. For
  ``L = 0.5 ||w||^2`` it is ``(d/2) nbeta / (nbeta + gamma)``.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar`` (the loss SGLD samples).
    params: the point w* (pytree).
    batch: data for loss_fn (the full training set for L_n).
    nbeta: n times the inverse temperature (> 0).
    gamma: localization strength (>= 0).
    max_params: refuse models with more parameters than this (dense).

  Returns:
    LLCHatPrediction.

  Raises:
    ValueError: if nbeta <= 0, gamma < 0, the model is too large, or A is not
      positive definite (the message gives its smallest eigenvalue).

  References:
    Cullen et al. (2026), LLC estimation by localized SGLD; SPEC §3 "the gap
    to explain", item 2.

  Example:
    >>> import jax.numpy as jnp
    >>> pred = predict_llc_hat(lambda w, b: 0.5 * jnp.sum(w ** 2), jnp.ones(4),
    ...                        None, nbeta=3.0, gamma=1.0)
    >>> round(pred.curvature_term, 12)
    1.5
  """
  nbeta = _check_positive("nbeta", nbeta)
  gamma = _check_nonnegative("gamma", gamma)
  expansion = dense_hessian(loss_fn, params, batch, max_params)
  h_P, u_PxP = np.linalg.eigh(expansion.hessian)
  a_P = nbeta * h_P + gamma
  min_a = float(a_P.min())
  scale = max(float(np.abs(a_P).max()), 1e-300)
  _require(min_a > 1e-12 * scale,
           f"precision A = nbeta H + gamma I is not positive definite: its "
           f"smallest eigenvalue is {min_a:.6g} (nbeta={nbeta}, gamma={gamma})")
  g_P = u_PxP.T @ expansion.grad  # gradient in the eigenbasis
  mu_P = -nbeta * g_P / a_P
  curvature = 0.5 * nbeta * float(np.sum(h_P / a_P))
  gradient = nbeta * float(g_P @ mu_P + 0.5 * np.sum(h_P * mu_P ** 2))
  return LLCHatPrediction(curvature + gradient, curvature, gradient, min_a)


def sgld_llc_hat_quadratic(eigenvalues: Any, nbeta: float, gamma: float,
                           step_size: float, num_burnin: int,
                           num_draws: int) -> float:
  """Expected SGLD estimate of a finite full-batch run on a quadratic loss.

  With zero gradient at w* and Hessian eigenvalues ``h``, full-batch SGLD
  started at w* moves each eigendirection as ``delta <- c delta + sqrt(eps)
  xi`` with ``c = 1 - eps a / 2``, ``a = nbeta h + gamma``, so after t steps
  ``Var delta_t = (1 - c^(2t)) / (a (1 - eps a / 4))``. The estimate averages
  ``nbeta h Var delta_t / 2`` over the draws ``t = B, ..., B + D - 1``. As
  ``eps -> 0`` and ``B -> inf`` this is ``predict_llc_hat``'s curvature term;
  the difference measures the bias of the run (discretisation, unrelaxed slow
  directions), not of the quadratic approximation.

  Args:
    eigenvalues: (P,) Hessian eigenvalues of the loss at w*.
    nbeta: n times the inverse temperature (> 0).
    gamma: localization strength (>= 0).
    step_size: eps (> 0), with ``eps a < 2`` for every direction.
    num_burnin: B, discarded steps (>= 0).
    num_draws: D, averaged steps (>= 1).

  Returns:
    The expected estimate.

  Raises:
    ValueError: if an argument is out of range or some ``eps a >= 2``
      (the discretised dynamics diverge).

  Example:
    >>> round(sgld_llc_hat_quadratic([1.0, 1.0], 3.0, 1.0, 1e-4, 10 ** 6, 10),
    ...       4)  # (2 / 2) * 3 / 4 = 0.75, up to the eps a / 4 inflation
    0.7501
  """
  nbeta = _check_positive("nbeta", nbeta)
  gamma = _check_nonnegative("gamma", gamma)
  eps = _check_positive("step_size", step_size)
  num_burnin = _check_int("num_burnin", num_burnin, 0)
  num_draws = _check_int("num_draws", num_draws, 1)
  h_P = np.asarray(eigenvalues, np.float64)
  a_P = nbeta * h_P + gamma
  _require(bool(np.all((a_P > 0) & (eps * a_P < 2))),
           f"step_size={eps!r} is invalid: eps (nbeta h + gamma) must lie in "
           f"(0, 2); its range is [{eps * a_P.min():.3g}, "
           f"{eps * a_P.max():.3g}]")
  log_c2_P = 2 * np.log1p(-0.5 * eps * a_P)
  # Mean over the draws of c^(2t) = c^(2B) (1 - c^(2D)) / (D (1 - c^2)).
  decay_P = (np.exp(num_burnin * log_c2_P) * np.expm1(num_draws * log_c2_P)
             / (num_draws * np.expm1(log_c2_P)))
  var_P = (1 - decay_P) / (a_P * (1 - 0.25 * eps * a_P))
  return float(0.5 * nbeta * np.sum(h_P * var_P))


class SLQEstimate(NamedTuple):
  """Matrix-free estimate of the Laplace-predicted SGLD estimate.

  Attributes:
    llc_hat: curvature_term + gradient_term.
    curvature_term: SLQ estimate of ``(nbeta / 2) tr(H A^{-1})``.
    curvature_sem: standard error of curvature_term over probe vectors.
    gradient_term: ``nbeta (g . mu + mu^T H mu / 2)`` with mu from CG.
    min_ritz_value: smallest Ritz value of A seen by the Lanczos runs (an
      upper bound on A's smallest eigenvalue; negative means A is indefinite).
  """

  llc_hat: float
  curvature_term: float
  curvature_sem: float
  gradient_term: float
  min_ritz_value: float


def _flat_float64_gradient(loss_fn: Callable[[ArrayTree, Any], jax.Array],
                           params: ArrayLikeTree, batch: Any,
                           num_matvecs: int):
  """Flattened float64 params and the gradient of the loss over them.

  Call inside ``jax.enable_x64(True)``. Checks ``1 <= num_matvecs <= P``.

  Returns:
    ((P,) float64 parameters, ``grad_fn((P,)) -> (P,)``, the checked
    ``num_matvecs``).
  """
  flat_P, unravel = ravel_pytree(_to_float64(params))
  flat_P = flat_P.astype(jnp.float64)
  num_matvecs = _check_int("num_matvecs", num_matvecs, 1)
  _require(num_matvecs <= flat_P.size,
           f"num_matvecs={num_matvecs} is invalid: must be <= the number of "
           f"parameters {flat_P.size}")
  batch64 = _to_float64(batch)
  grad_fn = jax.grad(
      lambda f_P: jnp.asarray(loss_fn(unravel(f_P), batch64), jnp.float64))
  return flat_P, grad_fn, num_matvecs


def predict_llc_hat_slq(key: PRNGKey,
                        loss_fn: Callable[[ArrayTree, Any], jax.Array],
                        params: ArrayLikeTree, batch: Any, nbeta: float,
                        gamma: float, num_matvecs: int = 30,
                        num_probes: int = 50,
                        cg_maxiter: int = 500) -> SLQEstimate:
  """Matrix-free ``predict_llc_hat`` by stochastic Lanczos quadrature.

  ``tr(f(H))`` with ``f(h) = nbeta h / (nbeta h + gamma)`` is estimated with
  Rademacher probes and ``num_matvecs`` Lanczos steps per probe
  (``matfree.decomp.tridiag_sym``, ``matfree.funm.monte_carlo_funm_sym``,
  ``matfree.stochtrace.estimator_monte_carlo_mean_and_sem``), using
  Hessian-vector products only. The gradient term solves ``A mu = -nbeta g``
  by conjugate gradients. Runs in float64; needs ``gamma > 0``.

  Args:
    key: PRNG key for the probe vectors.
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    params: the point w* (pytree).
    batch: data for loss_fn.
    nbeta: n times the inverse temperature (> 0).
    gamma: localization strength (> 0).
    num_matvecs: Lanczos depth per probe (1 <= num_matvecs <= P).
    num_probes: number of probe vectors (>= 2).
    cg_maxiter: conjugate-gradient iteration cap.

  Returns:
    SLQEstimate with an error bar on the curvature term.

  Raises:
    ValueError: if an argument is out of range, or a Lanczos run finds a
      non-positive Ritz value of A (A is not positive definite).

  References:
    Ubaru, Chen and Saad (2017), "Fast estimation of tr(f(A)) via stochastic
    Lanczos quadrature"; Cullen et al. (2026) as ``predict_llc_hat``.
  """
  from matfree import decomp, funm, stochtrace  # optional dependency

  nbeta = _check_positive("nbeta", nbeta)
  gamma = _check_positive("gamma", gamma)
  num_probes = _check_int("num_probes", num_probes, 2)
  cg_maxiter = _check_int("cg_maxiter", cg_maxiter, 1)
  with jax.enable_x64(True):
    flat_P, grad_fn, num_matvecs = _flat_float64_gradient(
        loss_fn, params, batch, num_matvecs)
    num_params = int(flat_P.size)

    def hvp(v_P):
      return jax.jvp(grad_fn, (flat_P,), (v_P,))[1]

    def a_matvec(v_P):
      return nbeta * hvp(v_P) + gamma * v_P

    def ratio(a):  # f(h) with a = nbeta h + gamma: nbeta h / a = 1 - gamma/a
      return 1.0 - gamma / a

    tridiag = decomp.tridiag_sym(num_matvecs)
    integrand = funm.monte_carlo_funm_sym(funm.dense_funm_sym_eigh(ratio),
                                          tridiag)
    sampler = stochtrace.sampler_signs(flat_P, num=num_probes)
    estimate = stochtrace.estimator_monte_carlo_mean_and_sem(integrand, sampler)
    key_probe, key_ritz = jax.random.split(key)
    del key
    trace, sem = jax.jit(lambda k: estimate(a_matvec, k))(key_probe)

    def min_ritz(v_P):
      _, t_small, *_ = tridiag(a_matvec, v_P / jnp.linalg.norm(v_P))
      return jnp.linalg.eigvalsh(t_small)[0]

    probes = jax.random.rademacher(key_ritz, (4, num_params), jnp.float64)
    min_theta = float(jnp.min(jax.jit(jax.vmap(min_ritz))(probes)))
    _require(min_theta > 0,
             f"precision A = nbeta H + gamma I is not positive definite: a "
             f"Ritz value is {min_theta:.6g} (nbeta={nbeta}, gamma={gamma})")
    g_P = grad_fn(flat_P)
    mu_P, _ = jax.scipy.sparse.linalg.cg(a_matvec, -nbeta * g_P,
                                         maxiter=cg_maxiter, tol=1e-10)
    gradient = float(nbeta * (g_P @ mu_P + 0.5 * mu_P @ hvp(mu_P)))
    curvature = 0.5 * float(trace)
    curvature_sem = 0.5 * float(sem)
  return SLQEstimate(curvature + gradient, curvature, curvature_sem, gradient,
                     min_theta)


class HessianSpectrum(NamedTuple):
  """Stochastic Lanczos quadrature (SLQ) of a Hessian's spectral density.

  Attributes:
    nodes: (probes, matvecs) Ritz values of each probe's Lanczos run.
    weights: (probes, matvecs) squared first components of the Ritz vectors
      (each row sums to 1).
    num_params: P, the dimension of the Hessian.
  """

  nodes: np.ndarray
  weights: np.ndarray
  num_params: int

  def trace(self, fn: Callable[[np.ndarray], np.ndarray]
            ) -> tuple[float, float]:
    """SLQ estimate of ``tr fn(H)`` and its standard error over probes.

    Args:
      fn: vectorised scalar function of the eigenvalues.

    Returns:
      ``(P mean_probes sum_j w_j fn(theta_j), standard error)``.
    """
    per_probe = self.num_params * np.sum(self.weights * fn(self.nodes), axis=1)
    sem = per_probe.std(ddof=1) / np.sqrt(per_probe.size)
    return float(per_probe.mean()), float(sem)


def hessian_spectrum_slq(key: PRNGKey,
                         loss_fn: Callable[[ArrayTree, Any], jax.Array],
                         params: ArrayLikeTree, batch: Any,
                         num_matvecs: int = 30,
                         num_probes: int = 10) -> HessianSpectrum:
  """Matrix-free spectral density of the loss Hessian by SLQ, in float64.

  One Lanczos run (``matfree.decomp.tridiag_sym``, full reorthogonalisation)
  of Hessian-vector products per Rademacher probe; the Ritz values and the
  squared first components of their vectors form a quadrature rule for
  ``v^T f(H) v / |v|^2``. One spectrum serves every function of H: the soft
  rank ``1/2 tr(nbeta H (nbeta H + gamma)^-1)`` of ``predict_llc_hat`` at any
  (nbeta, gamma) (Lanczos on H and on ``nbeta H + gamma I`` build the same
  Krylov space), or eigenvalue counts above a threshold (coarser: a step
  function is not smooth).

  Args:
    key: PRNG key for the probes.
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    params: the point (pytree).
    batch: data for loss_fn.
    num_matvecs: Lanczos depth per probe (1 <= num_matvecs <= P).
    num_probes: number of probes (>= 2).

  Returns:
    HessianSpectrum.

  Raises:
    ValueError: if an argument is out of range.

  References:
    Ubaru, Chen and Saad (2017); Ghorbani, Krishnan and Xiao (2019), "An
    investigation into neural net optimization via Hessian eigenvalue
    density".

  Example:
    >>> import jax, jax.numpy as jnp
    >>> s = hessian_spectrum_slq(jax.random.key(0),
    ...                          lambda w, b: 0.5 * jnp.sum(b * w ** 2),
    ...                          jnp.zeros(3), jnp.array([1.0, 2.0, 4.0]),
    ...                          num_matvecs=3, num_probes=2)
    >>> round(s.trace(lambda h: h)[0], 6)  # tr H = 7
    7.0
  """
  from matfree import decomp  # optional dependency

  num_probes = _check_int("num_probes", num_probes, 2)
  with jax.enable_x64(True):
    flat_P, grad_fn, num_matvecs = _flat_float64_gradient(
        loss_fn, params, batch, num_matvecs)
    num_params = int(flat_P.size)
    tridiag = decomp.tridiag_sym(num_matvecs)

    def one_probe(key_probe):
      v_P = jax.random.rademacher(key_probe, (num_params,), jnp.float64)
      hvp = lambda u_P: jax.jvp(grad_fn, (flat_P,), (u_P,))[1]
      _, t_MxM, *_ = tridiag(hvp, v_P / jnp.linalg.norm(v_P))
      theta_M, u_MxM = jnp.linalg.eigh(t_MxM)
      return theta_M, jnp.square(u_MxM[0])

    nodes, weights = jax.jit(lambda k: jax.lax.map(
        one_probe, jax.random.split(k, num_probes)))(key)
  return HessianSpectrum(np.asarray(nodes, np.float64),
                         np.asarray(weights, np.float64), num_params)
