"""A sweep's work items: every (setting, point), padded to whole chunks."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import numpy as np

from slt_jax.samplers.sgld import SGLDSettings
from slt_jax.tree_types import ArrayTree, PRNGKey

__all__ = ["WorkPlan", "plan_work"]


class WorkPlan(NamedTuple):
  """The work items of one run, padded to whole chunks.

  Item j is (setting ``j // P``, point ``j % P``); padding repeats the last.

  Attributes:
    chunk: items per chunk.
    num_chunks: chunks.
    num_items: items before padding (S × P).
    point_ids: (num_chunks × chunk,) point of each padded item.
    setting_ids: (num_chunks × chunk,) setting of each padded item.
    keys: (P,) the points' keys.
    points: pytree of (P, ...) points.
    settings: ``SGLDSettings`` of (S,) float32 arrays.
  """

  chunk: int
  num_chunks: int
  num_items: int
  point_ids: np.ndarray
  setting_ids: np.ndarray
  keys: jax.Array
  points: ArrayTree
  settings: SGLDSettings

  def chunk_arguments(self, index: int) -> tuple:
    """(keys, anchors, settings) of chunk ``index``, leading axis ``chunk``."""
    rows = slice(index * self.chunk, (index + 1) * self.chunk)
    point_ids, setting_ids = self.point_ids[rows], self.setting_ids[rows]
    return (
      self.keys[point_ids],
      jax.tree.map(lambda x: x[point_ids], self.points),
      jax.tree.map(lambda x: x[setting_ids], self.settings),
    )


def plan_work(
  key: PRNGKey, points: ArrayTree, grid: SGLDSettings, chunk: int
) -> WorkPlan:
  """Every setting of ``grid`` at every point of ``points``, in chunks.

  Args:
    key: split into one key per point (shared by every setting).
    points: pytree of (P, ...) points.
    grid: ``SGLDSettings`` of (S,) float64 arrays.
    chunk: items per chunk.

  Returns:
    WorkPlan.

  Example:
    >>> grid = SGLDSettings(*[np.array([1.0, 2.0])] * 3)
    >>> plan = plan_work(jax.random.key(0), np.zeros((3, 2)), grid, 4)
    >>> plan.num_chunks, plan.point_ids.tolist(), plan.setting_ids.tolist()
    (2, [0, 1, 2, 0, 1, 2, 2, 2], [0, 0, 0, 1, 1, 1, 1, 1])
  """
  num_points = jax.tree.leaves(points)[0].shape[0]
  num_items = grid.step_size.shape[0] * num_points
  num_chunks = math.ceil(num_items / chunk)
  item_ids = np.minimum(np.arange(num_chunks * chunk), num_items - 1)
  return WorkPlan(
    chunk,
    num_chunks,
    num_items,
    item_ids % num_points,
    item_ids // num_points,
    jax.random.split(key, num_points),
    points,
    SGLDSettings(*[v.astype(np.float32) for v in grid]),
  )
