"""The timed simulator (see :mod:`pvspin.sim.engine`)."""

from ._compiled import check as _check_compiled

_check_compiled()
