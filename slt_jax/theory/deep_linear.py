"""Learning coefficient of deep linear networks (Aoyagi 2024): host-side Python.

A deep linear network maps ``x -> W_L ... W_1 x`` with ``W_i`` of shape
``(H_i, H_{i-1})``; ``widths = (H_0, ..., H_L)`` lists the input width, the
hidden widths and the output width. With Gaussian noise and a true map of rank
r, Aoyagi's theorem gives the learning coefficient λ and its multiplicity m in
closed form. With ``M_i = H_i - r`` there is exactly one set Σ of ``ℓ + 1``
layer indices with

* ``max_{i in Σ} M_i < min_{k not in Σ} M_k``,
* ``sum_{i in Σ} M_i >= ℓ max_{i in Σ} M_i``,
* ``sum_{i in Σ} M_i < ℓ min_{k not in Σ} M_k``

(the first and last conditions are void when Σ holds every index). The first
condition makes Σ a set of smallest ``M_i``, taking tied values all or none,
so Σ is found among the prefixes of the indices sorted by ``M_i``. With
``S = sum_{i in Σ} M_i``, ``c = ceil(S / ℓ)`` and ``a = S - (c - 1) ℓ`` (so
``1 <= a <= ℓ``)::

  λ = (r (H_0 + H_L) - r²) / 2 + a (ℓ - a) / (4 ℓ)
      - ℓ (ℓ - 1) / 4 (S / ℓ)² + (1 / 2) sum_{i < j in Σ} M_i M_j,
  m = a (ℓ - a) + 1.

For one hidden layer (``L = 2``) this is Aoyagi and Watanabe's reduced-rank
regression coefficient (``reduced_rank_regression_llc``) on every shape, with
m = 2 exactly in their balanced case with ``H_0 + H_1 + H_2 + r`` odd; for
one layer (``L = 1``) it is the regular ``H_0 H_1 / 2``.

References:
  Aoyagi, M. (2024), "Consideration on the learning efficiency of multiple-
    layered neural networks with linear units", Neural Networks 172, Thm 1.
  Furman, Z. and Lau, E. (2024), "Estimating the local learning coefficient
    at scale", arXiv:2402.03698 (restates the theorem in an appendix).
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import Sequence

from slt_jax.theory.closed_forms import _check_exponents, _check_int, _require

__all__ = ["deep_linear_llc"]


def _aoyagi_subset(excess: Sequence[int]) -> list[int]:
  """The indices Σ of Aoyagi's theorem for the excess widths ``M_i``.

  Args:
    excess: ``M_i = H_i - r >= 0`` for i = 0..L, with L >= 1.

  Returns:
    The indices in Σ, ordered by ``M_i``.

  Raises:
    ValueError: if no prefix of the sorted indices satisfies the conditions
      (never for valid widths and rank).
  """
  order = sorted(range(len(excess)), key=lambda i: excess[i])
  for size in range(2, len(order) + 1):
    inside = [excess[i] for i in order[:size]]
    outside = [excess[i] for i in order[size:]]
    ell, total = size - 1, sum(inside)
    if outside and not (
      max(inside) < min(outside) and total < ell * min(outside)
    ):
      continue
    if total >= ell * max(inside):
      return order[:size]
  raise ValueError(f"excess={list(excess)!r} is invalid: no Aoyagi subset")


def _deep_linear_llc_exact(
  widths: Sequence[int], rank: int
) -> tuple[Fraction, int]:
  """``(λ, m)`` of ``deep_linear_llc`` with λ an exact ``Fraction``."""
  excess = [h - rank for h in widths]
  sigma = [excess[i] for i in _aoyagi_subset(excess)]
  ell, total = len(sigma) - 1, sum(sigma)
  a = total - (math.ceil(Fraction(total, ell)) - 1) * ell
  pairs = sum(mi * mj for mi, mj in itertools.combinations(sigma, 2))
  lam = (
    Fraction(rank * (widths[0] + widths[-1]) - rank**2, 2)
    + Fraction(a * (ell - a), 4 * ell)
    - Fraction(ell * (ell - 1), 4) * Fraction(total, ell) ** 2
    + Fraction(pairs, 2)
  )
  return lam, a * (ell - a) + 1


def deep_linear_llc(widths: Sequence[int], rank: int) -> tuple[float, int]:
  """Learning coefficient and multiplicity of a deep linear network.

  The model is ``x -> W_L ... W_1 x`` with ``W_i`` of shape ``(H_i,
  H_{i-1})``, and the true map ``W_L* ... W_1*`` has rank ``rank``. The
  formula (module docstring) is evaluated in exact rational arithmetic.

  Args:
    widths: ``(H_0, H_1, ..., H_L)``: input width, hidden widths, output
      width (positive integers, at least two of them).
    rank: rank r of the true map, ``0 <= r <= min(widths)``.

  Returns:
    ``(λ, m)``: the learning coefficient (a float) and its multiplicity (an
    int >= 1).

  Raises:
    ValueError: if widths has fewer than two entries or a non-positive or
      non-integer entry, or rank is not an integer in [0, min(widths)].

  References:
    Aoyagi, M. (2024), Neural Networks 172, Thm 1.

  Example:
    >>> deep_linear_llc((5, 3, 5), 0)  # reduced-rank regression, odd sum
    (6.5, 2)
    >>> deep_linear_llc((4, 4, 4, 4), 1)
    (6.5, 1)
    >>> deep_linear_llc((3, 1, 1, 1, 4), 0)  # two scalar layers: m = 2
    (0.5, 2)
  """
  widths = _check_exponents("widths", widths, 1)
  _require(
    len(widths) >= 2,
    f"widths={widths!r} is invalid: needs at least 2 entries (input, output)",
  )
  rank = _check_int("rank", rank, 0)
  _require(
    rank <= min(widths),
    f"rank={rank} is invalid: must satisfy 0 <= rank <= min(widths) = "
    f"{min(widths)}",
  )
  lam, multiplicity = _deep_linear_llc_exact(widths, rank)
  return float(lam), multiplicity
