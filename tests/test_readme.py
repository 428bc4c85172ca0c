"""The README's quickstart runs as written and prints what the README shows.

The first ```python block under "## Quickstart" is executed verbatim (in a
temporary working directory) and its stdout compared, line by line, with the
```text block that follows it. On the machine the README was written on the
output is identical; on another CPU float rounding differs and so do the
chains, so numbers are compared to a tolerance while words, shapes, steps and
the stationarity flags must match exactly.
"""

import contextlib
import io
import os
import re

import pytest
from markdown_blocks import fenced_blocks, section

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def quickstart() -> tuple[str, str]:
  """(code, expected output) of the README's quickstart section: its first
  python block and its first text block."""
  with open(README, encoding="utf-8") as f:
    quick = section(f.read(), "Quickstart")
  code, out = fenced_blocks(quick, "python"), fenced_blocks(quick, "text")
  assert code and out, "README's Quickstart needs a python and a text block"
  return code[0], out[0]


def _close(got: str, want: str, after: str) -> bool:
  """Whether number ``got`` matches ``want``. Integers (shapes, steps,
  parameter counts) must be equal; an LLC within 5%, an accuracy within
  0.05; a standard deviation over three chains (after "±") within 50%."""
  if "." not in want:
    return got == want
  g, w = float(got), float(want)
  if after.rstrip().endswith("±"):
    return abs(g - w) <= 0.5 * abs(w) + 1.0
  return abs(g - w) <= 0.05 * abs(w) + 0.05


@pytest.mark.slow
def test_quickstart_runs_verbatim_and_prints_the_readme_output(
  tmp_path, monkeypatch
):
  code, expected = quickstart()
  monkeypatch.chdir(tmp_path)
  stdout = io.StringIO()
  with (
    contextlib.redirect_stdout(stdout),
    pytest.warns(RuntimeWarning, match="not stationary"),
  ):
    exec(
      compile(code, "README.md (Quickstart)", "exec"), {"__name__": "__main__"}
    )
  got_lines = stdout.getvalue().strip().splitlines()
  want_lines = expected.strip().splitlines()
  assert len(got_lines) == len(want_lines), stdout.getvalue()
  for got, want in zip(got_lines, want_lines):
    words = lambda line: NUMBER.sub("#", line).split()
    assert words(got) == words(want), (got, want)
    for g, w in zip(NUMBER.finditer(got), NUMBER.finditer(want)):
      assert _close(g.group(), w.group(), want[: w.start()]), (got, want)
