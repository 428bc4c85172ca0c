"""The LLC sweep's argument checks: mask, settings grid, points, observables.

Each function turns a caller's argument into the form the compiled program
takes, or raises ``ValueError`` naming the argument and its value.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from slt_jax.checks import check, check_positive_float32, is_int
from slt_jax.llc.config import SGLDConfig
from slt_jax.llc.masks import is_path_patterns, mask_from_paths
from slt_jax.samplers.sgld import SGLDSettings
from slt_jax.tree_types import ArrayLikeTree, ArrayTree

__all__ = [
  "ObservablesSpec",
  "check_point_shapes",
  "count_examples",
  "flatten_points",
  "resolve_mask",
  "resolve_key",
  "resolve_observables",
  "resolve_settings",
]


def resolve_key(key) -> jax.Array:
  """A typed PRNG key (``jax.random.key``) from a typed or legacy key.

  A legacy ``jax.random.PRNGKey`` (a (2,) uint32 array) is wrapped with
  ``jax.random.wrap_key_data``: it then gives the numbers of the typed key
  of the same seed.

  Raises:
    TypeError: naming ``key`` when it is neither.

  Example:
    >>> same = resolve_key(jax.random.PRNGKey(0)) == jax.random.key(0)
    >>> bool(same)
    True
  """
  if isinstance(key, jax.Array) and jax.dtypes.issubdtype(
    key.dtype, jax.dtypes.prng_key
  ):
    if key.shape != ():
      raise TypeError(
        f"key of shape {key.shape} is invalid: pass one key, "
        "e.g. jax.random.key(0)"
      )
    return key
  if (
    isinstance(key, (jax.Array, np.ndarray))
    and key.dtype == np.uint32
    and key.shape == (2,)
  ):
    return jax.random.wrap_key_data(jnp.asarray(key))
  raise TypeError(
    f"key={key!r} is invalid: pass a PRNG key, jax.random.key(seed) "
    "(or a legacy jax.random.PRNGKey(seed))"
  )


def resolve_mask(
  mask: Union[None, ArrayLikeTree, Callable], params: ArrayTree
) -> Optional[ArrayTree]:
  """Turns a mask spec into a pytree of 0/1 float arrays like ``params``.

  Args:
    mask: None (all parameters move), a pytree of booleans/arrays with the
      structure of ``params``, a predicate ``(path: str, leaf) -> bool``
      over ``jax.tree_util.keystr`` paths (e.g. ``lambda path, _: "W" in
      path``), or glob patterns over readable paths, one or a list (e.g.
      ``"**/attention/**"``; see ``slt_jax.llc.masks.mask_from_paths``).
    params: one point's parameters (no batch axes).

  Returns:
    None or a pytree of float32 arrays broadcastable to the leaves.

  Example:
    >>> params = {"W": jnp.ones((2, 3)), "V": jnp.ones(4)}
    >>> m = resolve_mask(lambda path, _: "W" in path, params)
    >>> float(m["W"]), float(m["V"])
    (1.0, 0.0)
    >>> float(resolve_mask(["V"], params)["V"])
    1.0
  """
  if mask is None:
    return None
  if is_path_patterns(mask):
    mask = mask_from_paths(params, mask)
  if callable(mask):
    return jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.full(
        (), bool(mask(jax.tree_util.keystr(path), x)), jnp.float32
      ),
      params,
    )
  if jax.tree.structure(mask) != jax.tree.structure(params):
    raise ValueError(
      "mask must have the structure of params: got "
      f"{jax.tree.structure(mask)} vs {jax.tree.structure(params)}"
    )
  return jax.tree.map(lambda m: jnp.asarray(m, jnp.float32), mask)


def _settings_field(name: str, value) -> np.ndarray:
  """One given ``SGLDSettings`` field as a non-empty 1-D float64 array."""
  if any(isinstance(v, str) for v in np.ravel(np.asarray(value, object))):
    raise ValueError(
      f"settings.{name}={value!r} is invalid: strings such as "
      "'default' or 'n_log_n' go in SGLDConfig.nbeta only"
    )
  array = np.asarray(value, np.float64)
  if array.ndim != 1 or array.size == 0:
    raise ValueError(
      f"settings.{name}={value!r} is invalid: must be a non-empty 1-D sequence"
    )
  return array


def _check_settings_ranges(grid: SGLDSettings) -> None:
  """Raises naming the first value that is not finite or out of range: eps
  and nβ must stay > 0 in float32, γ must be finite and >= 0 there."""
  for name in ("step_size", "nbeta"):
    for value in getattr(grid, name):
      check_positive_float32(f"settings.{name}", float(value))
  for value in grid.localization:
    with np.errstate(over="ignore"):
      as_float32 = np.float32(value)
    check(
      np.isfinite(value) and value >= 0 and np.isfinite(as_float32),
      "settings.localization",
      float(value),
      "must be finite (in float32 too) and >= 0",
    )


def resolve_settings(
  cfg: SGLDConfig, settings: Optional[SGLDSettings], num_examples: int
) -> tuple[SGLDSettings, bool]:
  """The settings as float64 arrays of one common length S.

  Args:
    cfg: supplies every field left None (``cfg.nbeta`` resolved for
      ``num_examples`` when it is ``"default"`` or ``"n_log_n"``).
    settings: None (one setting, ``cfg``'s) or an ``SGLDSettings`` of equal
      length 1-D sequences (zipped).
    num_examples: n.

  Returns:
    (SGLDSettings of (S,) float64 arrays, whether ``settings`` was a grid).

  Raises:
    ValueError: naming a field that is not 1-D, has a different length, is
      empty, not finite or out of range (eps > 0, nβ > 0, γ >= 0).

  Example:
    >>> cfg = SGLDConfig(step_size=1e-3, nbeta=10.0, localization=1.0)
    >>> grid, is_grid = resolve_settings(cfg, SGLDSettings(step_size=[1e-4, 1e-3]), 100)
    >>> grid.localization.tolist(), is_grid
    ([1.0, 1.0], True)
  """
  base = SGLDSettings(
    cfg.step_size, cfg.resolve_nbeta(num_examples), cfg.localization
  )
  if settings is None:
    return SGLDSettings(*[np.array([v], np.float64) for v in base]), False
  if not isinstance(settings, SGLDSettings):
    raise ValueError(
      f"settings={settings!r} is invalid: must be an SGLDSettings (or None)"
    )
  given = {
    name: _settings_field(name, value)
    for name, value in settings._asdict().items()
    if value is not None
  }
  if not given:
    raise ValueError("settings has no field set: pass None for cfg's values")
  lengths = {name: a.size for name, a in given.items()}
  if len(set(lengths.values())) != 1:
    raise ValueError(f"settings fields differ in length: {lengths}")
  size = next(iter(lengths.values()))
  grid = SGLDSettings(
    **{
      name: given.get(name, np.full(size, getattr(base, name), np.float64))
      for name in SGLDSettings._fields
    }
  )
  _check_settings_ranges(grid)
  return grid, True


def count_examples(data: ArrayTree, num_examples: Optional[int]) -> int:
  """n: ``num_examples`` if given, else the length of ``data``'s example axis.

  Raises:
    ValueError: if the leaves disagree on the example axis, it is empty, or
      ``num_examples`` is not an integer >= 1.

  Example:
    >>> count_examples({"x": np.zeros((5, 2)), "y": np.zeros(5)}, None)
    5
  """
  lengths = {x.shape[0] if np.ndim(x) else 0 for x in jax.tree.leaves(data)}
  if len(lengths) != 1:
    raise ValueError(
      f"data leaves disagree on the example axis: {sorted(lengths)}"
    )
  n = lengths.pop()
  if n == 0:
    raise ValueError("data is empty: the example axis has length 0")
  if num_examples is not None and not (
    is_int(num_examples) and num_examples >= 1
  ):
    raise ValueError(
      f"num_examples={num_examples!r} is invalid: must be an integer >= 1"
    )
  return n if num_examples is None else int(num_examples)


def flatten_points(
  params: ArrayLikeTree, batch_ndim: int
) -> tuple[ArrayTree, tuple, int]:
  """The points of ``params`` along one axis.

  Args:
    params: pytree whose leaves carry ``batch_ndim`` leading axes of points.
    batch_ndim: number of leading point axes.

  Returns:
    (pytree of numpy arrays shaped (P, ...), the batch shape, P).

  Raises:
    ValueError: if ``params`` has no leaves, ``batch_ndim`` is not an
      integer within every leaf's rank, the leaves disagree on the batch
      axes, or there is no point.

  Example:
    >>> flat, shape, num = flatten_points({"w": np.zeros((2, 3, 4))}, 2)
    >>> flat["w"].shape, shape, num
    ((6, 4), (2, 3), 6)
  """
  leaves = jax.tree.leaves(params)
  if not leaves:
    raise ValueError("params has no array leaves")
  if (
    isinstance(batch_ndim, bool)
    or not isinstance(batch_ndim, int)
    or batch_ndim < 0
    or any(np.ndim(x) < batch_ndim for x in leaves)
  ):
    raise ValueError(
      f"batch_ndim={batch_ndim!r} is invalid for leaves of "
      f"shapes {[np.shape(x) for x in leaves]}"
    )
  shapes = {np.shape(x)[:batch_ndim] for x in leaves}
  if len(shapes) != 1:
    raise ValueError(
      f"params leaves disagree on the {batch_ndim} batch axes: {sorted(shapes)}"
    )
  batch_shape = shapes.pop()
  num_points = math.prod(batch_shape)
  if num_points == 0:
    raise ValueError(f"params has no points: batch shape {batch_shape}")
  flat = jax.tree.map(
    lambda x: np.asarray(x).reshape((num_points,) + np.shape(x)[batch_ndim:]),
    params,
  )
  return flat, batch_shape, num_points


def check_point_shapes(flat: ArrayTree, point: ArrayTree) -> None:
  """Raises unless every point of ``flat`` (leaves (P, ...)) is shaped like
  ``point``, the point a sweep was compiled for.

  Raises:
    ValueError: showing both tree structures when they differ, else both
      lists of shapes.

  Example:
    >>> check_point_shapes({"w": np.zeros((4, 3))}, {"w": np.zeros(2)})
    Traceback (most recent call last):
    ...
    ValueError: params points have shapes [(3,)], but the sweep was compiled for [(2,)]
  """
  structure, compiled = jax.tree.structure(flat), jax.tree.structure(point)
  if structure != compiled:
    raise ValueError(
      f"params has tree structure {structure}, but the sweep was "
      f"compiled for {compiled}"
    )
  expected = [np.shape(x) for x in jax.tree.leaves(point)]
  got = [np.shape(x)[1:] for x in jax.tree.leaves(flat)]
  if got != expected:
    raise ValueError(
      f"params points have shapes {got}, but the sweep was "
      f"compiled for {expected}"
    )


class ObservablesSpec(NamedTuple):
  """What a sweep records besides the loss trace (static; see ``estimate_llc``).

  Attributes:
    names: the observable sets, in the caller's order.
    every: record on every ``every``-th draw (draws 0, every, 2 every, ...).
    per_example_loss_fn: ``fn(params, batch) -> (batch,)`` losses.
    batch_size: examples per evaluation of ``per_example_loss_fn`` (None:
      each set in one call).
    sizes: examples per set.
  """

  names: tuple
  every: int
  per_example_loss_fn: Callable
  batch_size: Optional[int]
  sizes: tuple


def _check_observe_arguments(
  observables, observe_every, per_example_loss_fn, observe_batch_size, cfg
) -> None:
  """Raises naming the first observables argument that is invalid."""
  if (
    not isinstance(observables, dict)
    or not observables
    or not all(isinstance(name, str) and name for name in observables)
  ):
    raise ValueError(
      f"observables={type(observables).__name__} is invalid: "
      "must be a non-empty dict {name: data set}, names "
      "non-empty strings"
    )
  if not callable(per_example_loss_fn):
    raise ValueError(
      "observables need per_example_loss_fn(params, batch) -> "
      f"(batch,) losses; got {per_example_loss_fn!r}"
    )
  if not (is_int(observe_every) and observe_every >= 1):
    raise ValueError(
      f"observe_every={observe_every!r} is invalid: must be an integer >= 1"
    )
  if cfg.num_draws % observe_every:
    raise ValueError(
      f"observe_every={observe_every} is invalid: must divide "
      f"num_draws={cfg.num_draws}"
    )
  if observe_batch_size is not None and not (
    is_int(observe_batch_size) and observe_batch_size >= 1
  ):
    raise ValueError(
      f"observe_batch_size={observe_batch_size!r} is invalid: "
      "must be None or an integer >= 1"
    )


def _observable_size(
  name: str, data: ArrayTree, per_example_loss_fn: Callable, point: ArrayTree
) -> int:
  """The examples in observable set ``name``, checked against
  ``per_example_loss_fn`` at ``point`` (one loss per example)."""
  try:
    size = count_examples(data, None)
  except ValueError as error:
    raise ValueError(f"observables[{name!r}]: {error}") from None
  try:
    shape = jax.eval_shape(per_example_loss_fn, point, data)
  except Exception as error:  # noqa: BLE001 - re-raised with the set named.
    raise ValueError(
      f"per_example_loss_fn fails on observables[{name!r}]: "
      f"{type(error).__name__}: {error}"
    ) from error
  if not isinstance(shape, jax.ShapeDtypeStruct) or shape.shape != (size,):
    raise ValueError(
      f"per_example_loss_fn must return one loss per example: got "
      f"{getattr(shape, 'shape', shape)} for the {size} examples of "
      f"observables[{name!r}]"
    )
  return size


def resolve_observables(
  observables: Optional[dict],
  observe_every: int,
  per_example_loss_fn: Optional[Callable],
  observe_batch_size: Optional[int],
  cfg: SGLDConfig,
  point: ArrayTree,
) -> tuple[Optional[ObservablesSpec], Optional[dict]]:
  """Checks the observables arguments (see ``estimate_llc``) at one point.

  Args:
    observables: None, or ``{name: data set}``.
    observe_every: k >= 1 dividing ``cfg.num_draws``.
    per_example_loss_fn: ``fn(params, batch) -> (batch,)`` losses.
    observe_batch_size: None or an integer >= 1.
    cfg: the sweep's configuration.
    point: one point's parameters (no batch axes).

  Returns:
    (ObservablesSpec, {name: set as jax arrays}), or (None, None) without
    observables.

  Raises:
    ValueError: naming the bad argument, or the set ``per_example_loss_fn``
      fails on.

  Example:
    >>> fn = lambda w, batch: (batch - w) ** 2
    >>> cfg = SGLDConfig(num_draws=10)
    >>> spec, sets = resolve_observables({"a": np.zeros(3)}, 5, fn, None, cfg, 0.0)
    >>> spec.names, spec.every, spec.sizes
    (('a',), 5, (3,))
  """
  if observables is None:
    return None, None
  _check_observe_arguments(
    observables, observe_every, per_example_loss_fn, observe_batch_size, cfg
  )
  sets = {
    name: jax.tree.map(jnp.asarray, value)
    for name, value in observables.items()
  }
  sizes = tuple(
    _observable_size(name, value, per_example_loss_fn, point)
    for name, value in sets.items()
  )
  return ObservablesSpec(
    tuple(observables),
    int(observe_every),
    per_example_loss_fn,
    None if observe_batch_size is None else int(observe_batch_size),
    sizes,
  ), sets
