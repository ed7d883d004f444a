"""A user's own lock, written in the guest vocabulary: ``--lock path/to/file.py:NAME``.

``NAME`` is a class or factory called as ``NAME(mem, ncpus)`` that returns an object with
the :class:`~pvspin.kernel.api.Spinlock` methods ``alloc_lock(name)``, ``spin_lock(lock)``
and ``spin_unlock(lock)`` (generators), optionally ``spin_trylock(lock)`` and
``final_state_problems()``.  What the checker may assume of it is what ``NAME`` declares
(``NAME.DECLARED``, :mod:`pvspin.kernel.declarations`; a subclass of a kernel lock inherits
its class's); one that declares knobs is called as ``NAME(mem, ncpus, config)``.  See
``examples/`` for a worked example.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from ..machine.crash import guest_crash, not_a_generator
from ..machine.memory import View
from .declarations import LockDeclarations, declared_by

REQUIRED = ("alloc_lock", "spin_lock", "spin_unlock")


class UserLockError(ValueError):
    """The user's lock file cannot be used; the message names what is wrong."""


def canonical_name(spec: str) -> str:
    """``file.py:NAME`` of ``path/to/file.py:NAME``: the lock however its path is spelled, from any directory."""
    path, _, attr = spec.rpartition(":")
    return f"{Path(path).name}:{attr}"


def load_user_lock(spec: str) -> Callable:
    """Resolve ``path/to/file.py:NAME`` to a factory ``(mem, ncpus, config=None) -> lock``.

    The factory's ``declared`` is what ``NAME`` declares; it is given ``config`` when that
    declares knobs.
    """
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
    except (Exception, SystemExit) as exc:  # the user's file: report it in one line, no traceback
        raise UserLockError(f"lock {spec!r}: {path} failed to import: {_error(exc)}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserLockError(f"lock {spec!r}: {path} has no class or function {attr}")
    try:
        declared = declared_by(factory)
    except TypeError as exc:
        raise UserLockError(f"lock {spec!r}: {attr}.DECLARED: {exc}") from None
    takes_config = bool(declared.knobs)

    def build(mem, ncpus, config=None):
        call = f"{attr}(mem, ncpus, config)" if takes_config else f"{attr}(mem, ncpus)"
        try:
            lock = factory(mem, ncpus, config) if takes_config else factory(mem, ncpus)
        except (Exception, SystemExit) as exc:
            raise UserLockError(f"lock {spec!r}: {call} failed: {_error(exc)}") from None
        for method in REQUIRED:
            if not callable(getattr(lock, method, None)):
                raise UserLockError(f"lock {spec!r}: {attr} has no method {method}()")
        return CheckedLock(lock, spec, attr, declared.for_class(type(lock)))

    build.declared = declared
    return build


def _error(exc: BaseException) -> str:
    crash = guest_crash(exc)
    return str(crash) if crash is not None else f"{type(exc).__name__}: {exc}"


class CheckedLock:
    """A user's lock as the drivers see it: the same object, with each way its methods can fail named.

    Setup-time failures (``alloc_lock`` raising or returning no lock) are :class:`UserLockError`;
    a ``spin_*`` method returning something other than a generator is a ``GuestCrash`` raised
    in the guest code that called it, so the driver reports it where it happened.  Other
    attributes are the lock's own (``qnodes``, its constants, ...).  ``declared`` is what the
    factory declares, completed for the lock's class (its methods' locals).
    """

    def __init__(self, lock, spec: str, attr: str, declared: LockDeclarations):
        self._lock, self._spec = lock, spec
        self.declared = declared
        self.name = str(getattr(lock, "name", attr))
        self._label = type(lock).__name__ if not isinstance(lock, type) else attr

    def __getattr__(self, name):
        return getattr(self._lock, name)

    def alloc_lock(self, name: str) -> View:
        try:
            view = self._lock.alloc_lock(name)
        except (Exception, SystemExit) as exc:
            raise UserLockError(f"lock {self._spec!r}: alloc_lock({name!r}) failed: {_error(exc)}") from None
        if not isinstance(view, View):
            raise UserLockError(f"lock {self._spec!r}: alloc_lock({name!r}) returned {view!r:.60}, not a lock in "
                                "guest memory (a View, as mem.alloc(layout, name) returns)")
        return view

    def _guest_code(self, method: str, lock):
        gen = getattr(self._lock, method)(lock)
        crash = not_a_generator(f"{self._label}.{method}", gen)
        if crash is not None:
            raise crash
        return gen

    def spin_lock(self, lock):
        return self._guest_code("spin_lock", lock)

    def spin_unlock(self, lock):
        return self._guest_code("spin_unlock", lock)

    def spin_trylock(self, lock):
        return self._guest_code("spin_trylock", lock)

    def final_state_problems(self) -> list[str]:
        """The lock's own final-state check; its failure is a problem of the final state too."""
        check = getattr(self._lock, "final_state_problems", None)
        if check is None:
            return []
        try:
            problems = check()
        except (Exception, SystemExit) as exc:
            return [f"{self._label}.final_state_problems() failed: {_error(exc)}"]
        if not isinstance(problems, (list, tuple)) or not all(isinstance(p, str) for p in problems):
            return [f"{self._label}.final_state_problems() returned {problems!r:.60}, not a list of strings"]
        return list(problems)
