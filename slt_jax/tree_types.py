"""Type aliases shared across the package."""

from typing import Any

import jax

__all__ = ["PRNGKey", "ArrayTree", "ArrayLikeTree"]

PRNGKey = jax.Array
ArrayTree = Any  # a pytree whose leaves are jax.Array
ArrayLikeTree = Any  # a pytree whose leaves are array-likes
