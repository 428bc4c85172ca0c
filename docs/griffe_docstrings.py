"""A griffe extension for the API reference: two docstring conventions.

The library's Google-style docstrings differ from what griffe's Google
parser reads in two ways, both fixed here before griffe parses a docstring
(the source is untouched):

* Doctests are headed ``Example:``; griffe knows only ``Examples:`` as the
  section that renders ``>>>`` lines as code (it would render ``Example:`` as
  an admonition whose ``>>>`` lines Markdown reads as nested quotes).
* Several arguments may share one ``Args:`` entry (``a, b: ...``); when their
  names wrap onto a second line, the names are joined onto one line so the
  entry parses as ``names: description``.
"""

import re

import griffe

EXAMPLE_HEADING = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
# A line of argument names only, ending with a comma, and the line after it.
WRAPPED_NAMES = re.compile(r"^(\s+(?:\w+, )+\w+,)\n\s+", re.MULTILINE)


def normalise(docstring: str) -> str:
  """Returns ``docstring`` in the form griffe's Google parser reads.

  Example:
    >>> normalise("Args:\\n  a, b,\\n    c: as above.\\n\\nExample:\\n  >>> 1")
    'Args:\\n  a, b, c: as above.\\n\\nExamples:\\n  >>> 1'
  """
  docstring = EXAMPLE_HEADING.sub(r"\1Examples:", docstring)
  return WRAPPED_NAMES.sub(r"\1 ", docstring)


class DocstringConventions(griffe.Extension):
  """Normalises every docstring of the API reference (see ``normalise``)."""

  def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
    """Rewrites ``obj``'s docstring, if it has one."""
    if obj.docstring is not None:
      obj.docstring.value = normalise(obj.docstring.value)
