"""Argument checks shared by the configs: one rule where a value enters.

Each raises ``ValueError`` naming the bad field and value.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re


def _check(condition: bool, name: str, value, requirement: str) -> None:
  if not condition:
    raise ValueError(f"{name}={value!r} is invalid: {requirement}")


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
  return (
    isinstance(value, numbers.Real)
    and not isinstance(value, bool)
    and math.isfinite(value)
  )


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
      _check(_is_real(value), field.name, value, "must be a finite number")
    elif "int" in kinds:
      _check(_is_int(value), field.name, value, "must be an integer")
    elif "bool" in kinds:
      _check(isinstance(value, bool), field.name, value, "must be a bool")
