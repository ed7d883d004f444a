"""A user's own lock, written in the guest vocabulary: ``--lock path/to/file.py:NAME``.

``NAME`` is a class or factory called as ``NAME(mem, ncpus)`` that returns an object with
the :class:`~pvspin.kernel.api.Spinlock` methods ``alloc_lock(name)``, ``spin_lock(lock)``
and ``spin_unlock(lock)`` (generators), optionally ``spin_trylock(lock)`` and
``final_state_problems()``.  See ``examples/`` for a worked example.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

REQUIRED = ("alloc_lock", "spin_lock", "spin_unlock")


class UserLockError(ValueError):
    """The user's lock file cannot be used; the message names what is wrong."""


def load_user_lock(spec: str) -> Callable:
    """Resolve ``path/to/file.py:NAME`` to a factory ``(mem, ncpus, config=None) -> lock``."""
    path, sep, attr = spec.rpartition(":")
    if not sep or not path.endswith(".py") or not attr:
        raise UserLockError(f"lock {spec!r} is not path/to/file.py:NAME")
    file = Path(path)
    if not file.is_file():
        raise UserLockError(f"lock {spec!r}: no such file {path}")
    module_spec = importlib.util.spec_from_file_location(f"pvspin_user_lock_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report it in one line, no traceback
        raise UserLockError(f"lock {spec!r}: {path} failed to import: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserLockError(f"lock {spec!r}: {path} has no class or function {attr}")

    def build(mem, ncpus, config=None):
        lock = factory(mem, ncpus)
        for method in REQUIRED:
            if not callable(getattr(lock, method, None)):
                raise UserLockError(f"lock {spec!r}: {attr} has no method {method}()")
        if not hasattr(lock, "name"):
            lock.name = attr
        return lock

    return build
