"""The documentation site: its code runs, its API pages cover the package,
and it builds.

Every ```python block of a page under ``docs/`` runs, in order, in one fresh
namespace per page (in a temporary working directory), as a reader would
run the page; the blocks assert their own values (closed forms, exact
reproductions). ```py blocks are shown but not run (they need several
processes). A page whose first line is ``<!-- docs-test: slow -->`` runs in
the slow tier. ``mkdocs build --strict`` (broken references, missing pages
or README sections fail it) runs in the slow tier when mkdocs is installed
(``pip install -e ".[docs]"``; ``make docs``).
"""

import contextlib
import glob
import importlib.util
import io
import os
import pkgutil
import subprocess
import sys

import pytest
from markdown_blocks import fenced_blocks

import slt_jax

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
DOCS = os.path.join(ROOT, "docs")
SLOW_PAGE = "<!-- docs-test: slow -->"


def _read(path: str) -> str:
  with open(path, encoding="utf-8") as f:
    return f.read()


def _pages_with_code() -> list:
  """One pytest param per page with python blocks (slow ones marked)."""
  params = []
  for path in sorted(
    glob.glob(os.path.join(DOCS, "**", "*.md"), recursive=True)
  ):
    text = _read(path)
    if not fenced_blocks(text, "python"):
      continue
    slow = text.startswith(SLOW_PAGE)
    params.append(
      pytest.param(
        path,
        id=os.path.relpath(path, DOCS),
        marks=[pytest.mark.slow] if slow else [],
      )
    )
  return params


@pytest.mark.parametrize("page", _pages_with_code())
def test_page_code_runs_in_order(page, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  namespace = {"__name__": "__main__"}
  name = os.path.relpath(page, ROOT)
  for i, block in enumerate(fenced_blocks(_read(page), "python")):
    with contextlib.redirect_stdout(io.StringIO()):
      exec(compile(block, f"{name} (python block {i})", "exec"), namespace)


def test_the_pages_hold_code_to_run():
  """The extractor finds the pages' blocks (an unmatched fence would hide
  every block after it): the fast and slow pages together."""
  pages = _pages_with_code()
  assert len(pages) >= 8, [p.id for p in pages]
  slow = [p.id for p in pages if p.marks]
  assert "concepts/llc.md" not in slow and "how-to/tune.md" in slow


def test_every_module_has_an_api_page():
  """Each module of slt_jax is rendered (``::: module``) by an API page."""
  rendered = set()
  for path in glob.glob(os.path.join(DOCS, "api", "*.md")):
    for line in _read(path).splitlines():
      if line.startswith("::: "):
        rendered.add(line[4:].strip())
  modules = {"slt_jax"} | {
    info.name for info in pkgutil.walk_packages(slt_jax.__path__, "slt_jax.")
  }
  assert modules - rendered == set()
  assert rendered - modules == set()


def test_paper_page_includes_the_paper_readme():
  """The paper page includes the generated README, not a copy of it."""
  text = _read(os.path.join(DOCS, "paper.md"))
  assert '--8<-- "figures/paper/README.md"' in text
  assert "| figure | command |" not in text


def test_api_docstrings_are_normalised_for_griffe():
  """``Example:`` becomes griffe's ``Examples:`` (doctests render as code),
  and a shared ``Args:`` entry whose names wrap is joined onto one line."""
  pytest.importorskip("griffe")
  path = os.path.join(DOCS, "griffe_docstrings.py")
  spec = importlib.util.spec_from_file_location("griffe_docstrings", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  doc = "Args:\n  a, b,\n    c: as above.\n  d: one.\n\n  Example:\n    >>> 1\n"
  want = "Args:\n  a, b, c: as above.\n  d: one.\n\n  Examples:\n    >>> 1\n"
  assert module.normalise(doc) == want
  assert module.normalise("An Example: not a heading.") == (
    "An Example: not a heading."
  )


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
  pytest.importorskip("mkdocs")
  pytest.importorskip("mkdocstrings_handlers.python")
  done = subprocess.run(
    [
      sys.executable,
      "-m",
      "mkdocs",
      "build",
      "--strict",
      "--site-dir",
      str(tmp_path / "site"),
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    timeout=600,
  )
  assert done.returncode == 0, done.stderr[-4000:]
  paper = _read(tmp_path / "site" / "paper" / "index.html")
  assert "llc_vs_p" in paper  # the included table
  start = _read(tmp_path / "site" / "getting-started" / "index.html")
  assert "estimate_llc" in start  # the included README quickstart
