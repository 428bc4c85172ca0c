"""Sections and fenced code blocks of Markdown files (README, docs pages).

The tests that run documentation code (``test_readme.py``, ``test_docs.py``)
and the docs site's build hook (``docs/hooks.py``, which includes README
sections in pages) read Markdown through these two functions.
"""

import re

FENCE = re.compile(
  r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL
)


def section(text: str, heading: str) -> str:
  """The body of the ``## heading`` section of ``text`` (to the next ``## ``).

  Raises:
    ValueError: if ``text`` has no ``## heading`` section.

  Example:
    >>> section("# T\\n\\n## A\\ntext\\n\\n## B\\nmore", "A")
    'text\\n'
  """
  parts = text.split(f"\n## {heading}\n", 1)
  if len(parts) == 1:
    raise ValueError(f"heading={heading!r} is invalid: no such section")
  return parts[1].split("\n## ", 1)[0]


def fenced_blocks(text: str, language: str) -> list[str]:
  """The bodies of the fenced blocks of ``text`` tagged ``language``, in order.

  A fence is three backticks at the start of a line followed by the language
  (``py`` is not ``python``); what follows the language on that line (a
  title, options) is ignored.

  Example:
    >>> fenced_blocks("```python\\nx = 1\\n```\\n```py\\ny\\n```\\n", "python")
    ['x = 1\\n']
  """
  return [body for lang, body in FENCE.findall(text) if lang == language]
