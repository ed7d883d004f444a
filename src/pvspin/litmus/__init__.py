"""Litmus-test front ends: herd's assembly litmus tests as pvspin guest code.

A litmus file is read in two steps: :mod:`.source` cuts it into the parts every herd
test has (header, initial state, program table, final condition), and the front end of
its architecture compiles each column into a thread whose ``program()`` yields the
operations of :mod:`pvspin.machine.ops`.  :mod:`.cond` is the final-condition language.

Nothing here is part of the checker: a test reaches it as guest code, like any lock.
"""
