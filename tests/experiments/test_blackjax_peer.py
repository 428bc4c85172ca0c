"""The blackjax peer of experiments.bench on a tiny workload (needs blackjax,
the ``bench`` extra; skipped without it)."""

import math

import jax
import numpy as np
import pytest

pytest.importorskip("blackjax")

from experiments.bench import blackjax_peer, llc, workload  # noqa: E402
from slt_jax.grokking import losses  # noqa: E402
from slt_jax.llc.config import SGLDConfig  # noqa: E402

TINY = workload.BenchConfig(
  p=7,
  width=16,
  train_frac=0.6,
  num_train=None,
  train_steps=40,
  checkpoints=(2,),
  grid_checkpoints=1,
  sgld=SGLDConfig(
    step_size=1e-3,
    nbeta=8 / math.log(8),
    localization=5.0,
    num_chains=8,
    num_draws=150,
    num_burnin=30,
    batch_size=8,
  ),
)


def test_peer_agrees_with_slt_jax_side_by_side():
  ref = workload.reference_weights(TINY, jax.random.key(0))
  engine = workload.Engine(
    losses.make_loss("centered_mse"), ref["dataset"].train
  )
  rows = llc.side_by_side(
    TINY,
    engine,
    ref,
    jax.random.key(1),
    None,
    {"available": False},
    0,
    bj=blackjax_peer,
  )
  row = rows[0]
  assert row["blackjax"]["chain_steps"] == 2 * 8 * 180
  assert (
    row["blackjax"]["steps_per_second"] > 0 and row["ratio_vs_blackjax"] > 0
  )
  # Same w*, same conventions, independent noise: per checkpoint the means
  # agree within 4 standard errors of their difference.
  for ours, theirs in zip(
    row["slt_jax"]["per_checkpoint"], row["blackjax"]["per_checkpoint"]
  ):
    se = math.sqrt((ours["std"] ** 2 + theirs["std"] ** 2) / 8)
    assert abs(ours["mean"] - theirs["mean"]) <= 4 * se + 1e-6, (ours, theirs)
  assert llc.agreement(rows, "blackjax", 8)["num_compared"] == 2


def test_a_draw_records_the_loss_before_its_move():
  # Full batch (a permutation of all examples; the centered MSE does not
  # depend on the order): the first draw's loss is L_n(w*), so a one-draw
  # chain estimates exactly 0, as slt_jax's and devinterp's convention says.
  ref = workload.reference_weights(TINY, jax.random.key(0))
  data = jax.tree.map(np.asarray, ref["dataset"].train)
  n = data.labels.shape[0]
  program = blackjax_peer.llc_program(
    losses.make_loss("centered_mse"),
    data,
    step_size=1e-3,
    nbeta=4.0,
    localization=1.0,
    num_chains=3,
    num_draws=1,
    num_burnin=0,
    batch_size=n,
  )
  per_chain = np.asarray(program(jax.random.key(0), ref["checkpoints"]))
  assert per_chain.shape == (jax.tree.leaves(ref["checkpoints"])[0].shape[0], 3)
  np.testing.assert_allclose(per_chain, 0.0, atol=1e-4)
