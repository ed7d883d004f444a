"""Memory models of the execution-graph checker: one module each, behind one small interface.

A model is a module with

* ``NAME`` -- what ``--memory-model`` calls it;
* ``compile(op)`` -- the events one guest operation becomes: a tuple of ``(kind, tags,
  fence)`` (kind R, W or F of :mod:`..graph`), ``()`` for an operation that is no event
  under the model (a compiler-only barrier), or None when the model has no compilation
  for it;
* ``AXIOMS`` -- ``(name, check)`` pairs, ``check(execution)`` returning None when the
  axiom holds and otherwise the events of a violating cycle (or pair), for reports;
* ``consistent(execution)`` -- all axioms hold.

Adding a model adds a file and a line below.
"""

from __future__ import annotations

from . import armv8, sc, tso
from .common import violated  # noqa: F401 - part of the interface

MODELS = {m.NAME: m for m in (sc, tso, armv8)}
