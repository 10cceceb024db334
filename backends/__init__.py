"""Backends: the public ``Backend`` base class, discovery/registry, one thin module per framework.

>>> from softmaxbench.backends import Backend
>>> Backend.__name__
'Backend'
"""

from softmaxbench.backends.base import OPS, Backend

__all__ = ["Backend", "OPS"]
