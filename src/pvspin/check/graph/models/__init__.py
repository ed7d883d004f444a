"""Memory models of the execution-graph checker: one module each, behind one small interface.

A model is a module with

* ``NAME`` -- what ``--memory-model`` calls it;
* ``compile(op)`` -- the events one guest operation becomes: a tuple of ``(kind, tags,
  fence)`` (kind R, W or F of :mod:`..graph`), ``()`` for an operation that is no event
  under the model (a compiler-only barrier), or None when the model has no compilation
  for it;
* ``AXIOMS`` -- ``(name, check)`` pairs, ``check(execution)`` returning None when the
  axiom holds and otherwise the events of a violating cycle (or pair), for reports;
* ``consistent(graph)`` -- all axioms hold (of the graph's :class:`..execution.Execution`,
  or decided on the graph directly, as :mod:`.armv8_direct` does).

Adding a model adds a file and a line below.

The Linux-kernel memory model comes in versions (:mod:`.lkmm`): ``MODELS["lkmm"]`` is the
newest (``current``), :func:`get` gives any, e.g. ``get("lkmm", "v00")``.
"""

from __future__ import annotations

from . import armv8, lkmm, sc, tso
from .common import violated  # noqa: F401 - part of the interface

MODELS = {m.NAME: m for m in (sc, tso, armv8, lkmm.model())}
VERSIONED = {"lkmm": (lkmm.VERSIONS, lkmm.model)}  # model name -> (its versions, version -> model)


def get(name: str, version: str | None = None):
    """The model called ``name`` (a key of MODELS); ``version`` only for a versioned one (``lkmm``).

    KeyError for an unknown model, ValueError for a version the model does not have.
    """
    if version is None:
        return MODELS[name]
    if name not in VERSIONED:
        raise ValueError(f"the {name} memory model has no versions")
    return VERSIONED[name][1](version)
