"""``python -m experiments.architectures``."""

from experiments.architectures import main

main()
