"""``python -m experiments.basin_selection`` (see the package docstring)."""

from experiments.basin_selection import main

main()
