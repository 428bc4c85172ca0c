"""Argument checks shared by the configs: one rule where a value enters.

Each raises ``ValueError`` naming the bad field and value.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re

import numpy as np


def check(condition: bool, name: str, value, requirement: str) -> None:
  """Raises unless ``condition`` holds.

  Args:
    condition: whether ``value`` is acceptable.
    name: the argument or field the value came from.
    value: the value, shown with ``repr``.
    requirement: what a valid value must be.

  Raises:
    ValueError: ``"{name}={value!r} is invalid: {requirement}"``.

  Example:
    >>> check(2 > 0, "width", 2, "must be >= 1")
    >>> check(0 > 0, "width", 0, "must be >= 1")
    Traceback (most recent call last):
    ...
    ValueError: width=0 is invalid: must be >= 1
  """
  if not condition:
    raise ValueError(f"{name}={value!r} is invalid: {requirement}")


def is_int(value) -> bool:
  """Whether ``value`` is an integer (Python or NumPy), not a bool.

  >>> is_int(3), is_int(np.int64(3)), is_int(True), is_int(3.0)
  (True, True, False, False)
  """
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
  """Whether ``value`` is a finite real number (Python or NumPy), not a bool.

  >>> is_real(0.5), is_real(np.float32(2)), is_real(math.inf), is_real(True)
  (True, True, False, False)
  """
  return (
    isinstance(value, numbers.Real)
    and not isinstance(value, bool)
    and math.isfinite(value)
  )


def check_positive_float32(name: str, value) -> None:
  """Checks that ``value`` is a finite number > 0 that stays one in float32.

  Values that reach a float32 computation (step sizes, temperatures) must
  not round to 0 there, nor overflow to inf.

  Args:
    name: the argument or field the value came from.
    value: the value to check.

  Raises:
    ValueError: naming ``name`` and ``value`` when it is not a finite real
      number > 0, or when it rounds to 0 or inf in float32.

  Example:
    >>> check_positive_float32("step_size", 1e-4)
    >>> check_positive_float32("step_size", 1e-50)
    Traceback (most recent call last):
    ...
    ValueError: step_size=1e-50 is invalid: rounds to 0 in float32
    >>> check_positive_float32("nbeta", 1e39)
    Traceback (most recent call last):
    ...
    ValueError: nbeta=1e+39 is invalid: overflows to inf in float32
  """
  check(
    is_real(value) and value > 0, name, value, "must be a finite number > 0"
  )
  with np.errstate(over="ignore", under="ignore"):
    as_float32 = np.float32(value)
  check(as_float32 > 0, name, value, "rounds to 0 in float32")
  check(np.isfinite(as_float32), name, value, "overflows to inf in float32")


def check_types(config) -> None:
  """Checks every field of a config dataclass against its annotation.

  ``int`` fields must be integers (not bools, not 2.5), ``float`` fields
  finite real numbers; ``Optional`` fields may also be None, and a ``str``
  in a ``Union`` admits strings (their values are checked by the config).

  Raises:
    ValueError: naming the first bad field and its value.
  """
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    kinds = set(re.findall(r"\b(int|float|str|bool)\b", str(field.type)))
    if value is None and "Optional" in str(field.type):
      continue
    if isinstance(value, str) and "str" in kinds:
      continue
    if "float" in kinds:
      check(is_real(value), field.name, value, "must be a finite number")
    elif "int" in kinds:
      check(is_int(value), field.name, value, "must be an integer")
    elif "bool" in kinds:
      check(isinstance(value, bool), field.name, value, "must be a bool")
