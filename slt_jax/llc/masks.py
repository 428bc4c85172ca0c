"""Masks by parameter name: which weights a restricted LLC moves.

Every array of a pytree has a readable path: its keys joined by ``/``
(``layers/0/attention/query/kernel``), dict keys and sequence indices alike;
the array inside a ``flax.nnx`` Variable has its Variable's path (no
``.value``). ``mask_from_paths`` turns glob patterns over these paths (or
compiled regular expressions), each optionally with an index into the
matched arrays, into a 0/1 mask for ``estimate_llc(..., mask=...)``; the
engine also takes the patterns themselves (``mask="**/attention/**"``).
"""

from __future__ import annotations

import re
from typing import Any, Mapping, NamedTuple, Sequence, Union

import jax
import numpy as np
from flax import nnx

from slt_jax.checks import is_int
from slt_jax.tree_types import ArrayTree

__all__ = ["glob_regex", "is_path_patterns", "mask_from_paths", "param_paths"]

Pattern = Union[str, re.Pattern]
# A glob's wildcards, in the order they are tried: "**/" (any number of
# whole segments, none included), "**" (anything), "*" (within a segment),
# "?" (one character of a segment) and a character class.
_WILDCARD = re.compile(r"(\*\*/|\*\*|\*|\?|\[!?[^\]]+\])")


class _Selection(NamedTuple):
  """One pattern: as the caller wrote it, as a regex, and its index."""

  text: str
  regex: re.Pattern
  index: Any


def _is_variable(node) -> bool:
  return isinstance(node, nnx.Variable)


def _key_name(key) -> str:
  """One path key as a path segment."""
  if isinstance(key, jax.tree_util.DictKey):
    return str(key.key)
  if isinstance(key, jax.tree_util.SequenceKey):
    return str(key.idx)
  if isinstance(key, jax.tree_util.GetAttrKey):
    return key.name
  if isinstance(key, jax.tree_util.FlattenedIndexKey):
    return str(key.key)
  return str(key)


def _readable(path: tuple) -> str:
  return "/".join(_key_name(key) for key in path)


def param_paths(params: ArrayTree) -> list[str]:
  """The readable path of every array of ``params``, in leaf order.

  Args:
    params: any pytree (dicts, lists, ``nnx.State``, Linen variables).

  Returns:
    One ``/``-joined path per array (per Variable for ``flax.nnx`` state).

  Example:
    >>> param_paths({"layers": [{"w": np.ones(2)}, {"w": np.ones(2)}], "b": 0.0})
    ['b', 'layers/0/w', 'layers/1/w']
  """
  flat = jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_variable)
  return [_readable(path) for path, _ in flat[0]]


def glob_regex(glob: str) -> re.Pattern:
  """The regex a glob over ``/``-joined paths stands for.

  ``*`` matches within one segment, ``?`` one character of a segment,
  ``[abc]`` / ``[!abc]`` one character in / not in the class, ``**`` any
  run of characters (across segments) and ``**/`` any number of whole
  segments, none included.

  Example:
    >>> bool(glob_regex("layers/*/kernel").fullmatch("layers/0/kernel"))
    True
    >>> bool(glob_regex("layers/*/kernel").fullmatch("layers/0/mlp/kernel"))
    False
    >>> bool(glob_regex("**/kernel").fullmatch("kernel"))
    True
  """
  regex = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
  parts = []
  for i, piece in enumerate(_WILDCARD.split(glob)):
    if i % 2 == 0:
      parts.append(re.escape(piece))
    elif piece.startswith("["):
      parts.append("[^" + piece[2:] if piece.startswith("[!") else piece)
    else:
      parts.append(regex[piece])
  return re.compile("".join(parts))


def is_path_patterns(spec) -> bool:
  """Whether ``spec`` is a pattern or a non-empty list/tuple of patterns
  (glob strings or compiled regexes), as ``mask_from_paths`` takes.

  Example:
    >>> is_path_patterns("**/kernel"), is_path_patterns(["a", "b/*"])
    (True, True)
    >>> is_path_patterns({"w": True}), is_path_patterns([])
    (False, False)
  """
  patterns = spec if isinstance(spec, (list, tuple)) else [spec]
  return bool(patterns) and all(
    isinstance(p, (str, re.Pattern)) for p in patterns
  )


def _selections(patterns) -> list[_Selection]:
  """The patterns as ``_Selection``s: whole arrays (index ``...``) unless a
  mapping gives an index."""
  if is_path_patterns(patterns):
    patterns = patterns if isinstance(patterns, (list, tuple)) else [patterns]
    patterns = {p: ... for p in patterns}
  if not (
    isinstance(patterns, Mapping)
    and patterns
    and is_path_patterns(list(patterns))
  ):
    raise TypeError(
      f"patterns={patterns!r} is invalid: pass a glob string or compiled "
      "regex, a non-empty list of them, or a mapping {pattern: index}"
    )
  return [
    _Selection(p, p, index)
    if isinstance(p, re.Pattern)
    else _Selection(p, glob_regex(p), index)
    for p, index in patterns.items()
  ]


def _array_mask(
  path: str, shape: tuple, selections: list[_Selection]
) -> np.ndarray:
  """The 0/1 float32 mask of one array: a scalar when the array is wholly
  in or out, else shaped like the array."""
  chosen = np.zeros(shape, bool)
  for selection in selections:
    if not selection.regex.fullmatch(path):
      continue
    try:
      chosen[selection.index] = True
    except (IndexError, TypeError, ValueError) as error:
      raise ValueError(
        f"patterns[{selection.text!r}]: index {selection.index!r} is "
        f"invalid for {path!r} of shape {shape}: {error}"
      ) from None
  if chosen.all() or not chosen.any():
    return np.asarray(chosen.all(), np.float32)
  return chosen.astype(np.float32)


def _check_batch_ndim(params: ArrayTree, batch_ndim) -> None:
  ranks = [np.ndim(x) for x in jax.tree.leaves(params)]
  if not (is_int(batch_ndim) and 0 <= batch_ndim <= min(ranks, default=0)):
    raise ValueError(
      f"batch_ndim={batch_ndim!r} is invalid: must be an integer in "
      f"[0, {min(ranks, default=0)}] (the smallest rank of params' arrays)"
    )


def mask_from_paths(
  params: ArrayTree,
  patterns: Union[Pattern, Sequence[Pattern], Mapping[Pattern, Any]],
  *,
  batch_ndim: int = 0,
) -> ArrayTree:
  """A 0/1 mask like ``params`` from patterns over its readable paths.

  A glob (see ``glob_regex``) or compiled regex matches a whole path (see
  ``param_paths``). With a mapping ``{pattern: index}``, the index (NumPy
  indexing of one point's array, e.g. ``np.s_[:, 1]``; ``...`` for all of
  it) picks the entries of every matched array: ``{"**/query/kernel":
  np.s_[:, 1]}`` is head 1 of an ``nnx.MultiHeadAttention`` query (kernel
  shaped (in, heads, head_dim)). An array matched by several patterns gets
  the union.

  Args:
    params: a pytree (dicts, lists, ``nnx.State``, Linen variables) whose
      arrays carry ``batch_ndim`` leading point axes.
    patterns: a pattern, a list of patterns (whole arrays), or a mapping
      from pattern to index.
    batch_ndim: leading point axes of ``params``' arrays, left out of the
      mask (indices address one point's array).

  Returns:
    ``params``' structure with float32 leaves: 1.0 or 0.0 (shape ()) where
    an array is wholly in or out, else a 0/1 array of one point's shape.

  Raises:
    TypeError: naming ``patterns`` if it is none of the above.
    ValueError: naming a pattern that matches no path, an index invalid for
      a matched array, or an invalid ``batch_ndim``.

  Example:
    >>> params = {"layers": [{"w": np.ones((2, 3))}, {"w": np.ones((2, 3))}]}
    >>> mask = mask_from_paths(params, {"layers/1/*": np.s_[:, 0]})
    >>> float(mask["layers"][0]["w"]), mask["layers"][1]["w"].tolist()
    (0.0, [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
  """
  selections = _selections(patterns)
  _check_batch_ndim(params, batch_ndim)
  paths = param_paths(params)
  for selection in selections:
    if not any(selection.regex.fullmatch(path) for path in paths):
      raise ValueError(
        f"pattern {selection.text!r} matches no parameter path; the paths "
        f"are {paths[:8]}{' ...' if len(paths) > 8 else ''}"
      )

  def node_mask(path, node):
    return jax.tree.map(
      lambda x: _array_mask(
        _readable(path), np.shape(x)[batch_ndim:], selections
      ),
      node,
    )

  return jax.tree_util.tree_map_with_path(
    node_mask, params, is_leaf=_is_variable
  )
