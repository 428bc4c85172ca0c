"""The validation cases: built from explicit keys, named as registered."""

import jax
import numpy as np
import pytest

from slt_jax import known_cases, theory


@pytest.mark.slow
def test_cases_match_their_registered_names(key):
  cases = known_cases.all_cases(key, scale=0.01)
  assert [case.name for case in cases] == list(known_cases.CASES)
  for case in cases:
    assert case.cfg.num_draws >= 1 and case.true_llc > 0
  # Closed forms and finite-temperature values independent of the draws.
  iso = known_cases.make_case("isotropic_quadratic_d20", key)
  assert iso.true_llc == iso.finite_temp == pytest.approx(10 * 100 / 110)
  assert known_cases.make_case("rrr_4_3_8", key).true_llc == (
    theory.reduced_rank_regression_llc(4, 3, 8, 0)
  )
  assert known_cases.make_case("lazy_rf_p7_K8_n20", key).true_llc == 28.0


@pytest.mark.parametrize("name", ["normal_crossing_12", "lazy_rf_p5_K16_n10"])
def test_case_data_come_from_the_key(name, key):
  leaves = lambda k: jax.tree.leaves(known_cases.make_case(name, k).data)
  same, other = leaves(key), leaves(jax.random.fold_in(key, 1))
  for a, b in zip(leaves(key), same):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(same, other))


def test_unknown_case_name_raises(key):
  with pytest.raises(ValueError, match="name='nope' is invalid"):
    known_cases.make_case("nope", key)


def test_reduced_rank_regression_carries_aoyagis_multiplicity(key):
  # M=5, H=3, N=5 at rank 0: lambda = 13/2 with a pole of order 2 (the
  # deep-linear formula: S = 13, l = 2, M = 7, a = 1, multiplicity a(l-a)+1).
  case = known_cases.make_case("rrr_5_3_5", key)
  assert (case.true_llc, case.multiplicity) == (6.5, 2)
  assert known_cases.make_case("rrr_4_3_8", key).multiplicity == 1
