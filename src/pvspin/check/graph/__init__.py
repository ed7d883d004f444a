"""The execution-graph checker: the same guest code, every consistent execution under an axiomatic memory model.

``graph.py`` (events, records, graphs), ``execution.py`` (a graph as cat sets and
relations), ``relations.py`` (the relation algebra), ``explorer.py`` (the search),
``models/`` (one file per memory model: how kernel operations compile to its events, and
its axioms), ``runner.py`` (from ``pvspin check`` options to a report).
"""
