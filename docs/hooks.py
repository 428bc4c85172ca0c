"""MkDocs hook: pages include sections of the repository's README.

A line ``<!-- readme-section: Quickstart -->`` in a page is replaced, when
the site is built, by the body of the README's ``## Quickstart`` section
(up to the next ``## `` heading; ``tests/markdown_blocks.section``, the
reader the README's own test uses), so the page shows the README's text and
cannot drift from it. A missing section stops the build, naming it.
"""

import importlib.util
import os
import re

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
README = os.path.join(ROOT, "README.md")
MARKER = re.compile(r"^<!-- readme-section: (.+?) -->$", re.MULTILINE)


def _markdown_blocks():
  """The module ``tests/markdown_blocks.py``, loaded from its path."""
  path = os.path.join(ROOT, "tests", "markdown_blocks.py")
  spec = importlib.util.spec_from_file_location("markdown_blocks", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def on_page_markdown(markdown: str, **kwargs) -> str:
  """Replaces each ``readme-section`` marker by that README section."""
  if not MARKER.search(markdown):
    return markdown
  with open(README, encoding="utf-8") as f:
    readme = f.read()
  section = _markdown_blocks().section
  return MARKER.sub(lambda m: section(readme, m.group(1)), markdown)
