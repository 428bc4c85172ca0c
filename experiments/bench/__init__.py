"""The speed benchmark, ``python -m experiments.bench`` (see ``__main__``).

Modules: ``workload`` (configuration, reference weights, the timed engine),
``llc`` (LLC throughput against devinterp and PyTorch; the settings grid),
``torch_baselines`` (the PyTorch/devinterp side; imports torch),
``roofline``, ``scaling``, ``training`` and ``report`` (results.json and
figures).
"""
