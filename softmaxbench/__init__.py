"""softmaxbench: conformance and throughput of the softmax family against a certified reference.

The installed namespace is ``softmaxbench``; its parts live in the repository's top-level folders:
``softmaxbench.reference`` (the oracle), ``softmaxbench.backends`` (adapters and discovery),
``softmaxbench.suite`` (checks, benchmarks, runner, CLI) and ``softmaxbench.reports``.

Importing this package imports no framework (torch, jax, cupy); backends load them lazily.

>>> import softmaxbench
>>> softmaxbench.__version__ >= "0.1"
True
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
