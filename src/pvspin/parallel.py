"""Where parallel work runs: worker processes on this machine, or a Ray cluster.

Both backends hand out :class:`concurrent.futures.Future` objects, so a caller waits on local
processes and on Ray tasks alike (``as_completed``, ``wait``):

* :func:`local_pool` -- forked worker processes (the sweep's pool, and one per checker worker);
* :class:`RayPool` -- tasks and actors on a Ray cluster: an existing one (``--ray ADDRESS``,
  ``auto`` for the one ``ray start`` runs on this node) or one started for the run (``--ray``
  alone).  Every node must run the code the driver's results are keyed by: a probe on each
  node compares the ``pvspin`` package there with the driver's (:func:`code_fingerprint`), and
  only when one differs is the driver's package shipped to the workers (a runtime
  environment, whose workers start slower); every task and actor checks the fingerprint
  again where it runs, so a node that joins later with other code fails the run, loudly.

Ray is an optional extra (``pip install 'pvspin[ray]'``): it is imported only when asked for.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

LOCAL = "local"  # ``--ray`` without an address: a cluster on this machine, started for the run
RAY_MISSING = "--ray needs Ray, an optional extra: pip install 'pvspin[ray]'"
RETRIES = 5  # a Ray task whose worker died is run again, up to this many times


class RayUnavailable(Exception):
    """Ray is not installed, or the cluster cannot be reached: one line for the user."""


class WorkersLost(Exception):
    """Worker processes kept dying (killed, out of memory): the run gave up, in one line for the user."""


def local_pool(jobs: int) -> ProcessPoolExecutor:
    """``jobs`` forked processes that exit when this one is gone."""
    return ProcessPoolExecutor(jobs, mp_context=get_context("fork"), initializer=_exit_with_parent,
                               initargs=(os.getpid(),))


class RenewablePool:
    """:func:`local_pool`, replaced by a fresh one when a worker process dies (which breaks the whole pool).

    A caller whose future failed with :func:`lost_worker` calls :meth:`renew` with it and submits
    that work again; after ``RETRIES`` renewals :meth:`renew` raises :class:`WorkersLost`.
    """

    def __init__(self, jobs: int, what: str = "the run"):
        self.jobs, self.what = jobs, what
        self.pool = local_pool(jobs)
        self.renewals = 0

    def submit(self, fn, *args) -> Future:
        from concurrent.futures.process import BrokenProcessPool

        try:
            future = self.pool.submit(fn, *args)
        except BrokenProcessPool:  # it broke while idle
            self._renew()
            future = self.pool.submit(fn, *args)
        future.pool = self.pool
        return future

    def renew(self, future: Future) -> None:
        """``future`` failed because its pool broke: a fresh pool, unless that was done already."""
        if getattr(future, "pool", None) is self.pool:
            self._renew()

    def _renew(self) -> None:
        self.renewals += 1
        if self.renewals > RETRIES:
            raise WorkersLost(f"a worker process died {self.renewals} times: {self.what} gave up")
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = local_pool(self.jobs)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def __enter__(self) -> RenewablePool:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def _exit_with_parent(parent: int) -> None:
    """In a worker: exit when the driver's process is gone (``kill -9`` leaves no one to shut the pool down).

    Otherwise idle workers live on, holding the parent's stdout open.  A thread polls the parent
    once a second (portable; Linux's PR_SET_PDEATHSIG would need ctypes and still race the fork).
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable(RAY_MISSING) from None
    return ray


_fingerprint = None  # this process's code_fingerprint(), once computed


def code_fingerprint() -> str:
    """A digest of this process's ``pvspin`` package: the path and content of every source file in it."""
    global _fingerprint
    if _fingerprint is None:
        root = Path(__file__).resolve().parent
        digest = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
        _fingerprint = digest.hexdigest()
    return _fingerprint


class CodeMismatch(Exception):
    """A Ray worker runs other ``pvspin`` code than the driver."""


def _same_code(expected: str) -> None:
    if code_fingerprint() != expected:
        import socket

        raise CodeMismatch(f"a Ray worker on {socket.gethostname()} runs other pvspin code than the driver "
                           "(a node that joined after the run started?): run again to ship the driver's code")


def _checked_call(expected: str, fn, *args):
    """``fn(*args)`` in a Ray task, once the worker's code is the driver's."""
    _same_code(expected)
    return fn(*args)


class _CheckedActor:
    """A Ray actor holding ``cls(*args)``, made once the worker's code is the driver's."""

    def __init__(self, expected: str, cls, *args):
        _same_code(expected)
        self.instance = cls(*args)

    def call(self, method: str, *args):
        return getattr(self.instance, method)(*args)


class RayPool:
    """A connection to a Ray cluster for one run; :meth:`shutdown` leaves it (and stops a local one)."""

    def __init__(self, address: str):
        self.ray = _import_ray()
        self._connect(address)
        self.fingerprint = code_fingerprint()
        # the driver's package is shipped only when some node lacks it: Ray takes a local
        # package for the whole job alone (a connection of its own), and the job's workers
        # then start slower (an 8-point sweep on a running local cluster: 6.0 s against 5.4 s)
        self.shipped = not self._same_code_on_every_node()
        if self.shipped:
            self.ray.shutdown()
            self._connect(address, {"py_modules": [str(Path(__file__).resolve().parent)]})
        self._tasks: dict = {}

    def _connect(self, address: str, runtime_env: dict | None = None) -> None:
        import logging

        try:
            self.ray.init(address=address, runtime_env=runtime_env, logging_level=logging.WARNING,
                          log_to_driver=False, include_dashboard=False, configure_logging=True)
        except (ConnectionError, ValueError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RayUnavailable(f"--ray {address}: {first}") from None

    def _same_code_on_every_node(self) -> bool:
        """Whether a worker on each live node imports the driver's ``pvspin`` (its workers then serve the run)."""
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = ray.remote(num_cpus=0)(code_fingerprint)
        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU")]
        refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote()
                for node in nodes]
        try:
            return all(found == self.fingerprint for found in ray.get(refs))
        except ray.exceptions.RayError:  # pvspin not importable there at all
            return False

    def cpus(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def submit(self, fn, *args) -> Future:
        """``fn(*args)`` as a Ray task, run again if its worker dies; its own exception, not Ray's wrapper."""
        task = self._tasks.get(fn)
        if task is None:  # named after fn: the worker's process title is ray::NAME while it runs
            task = self._tasks[fn] = self.ray.remote(max_retries=RETRIES)(_checked_call).options(name=fn.__name__)
        return self.future(task.remote(self.fingerprint, fn, *args))

    def actor(self, cls, *args):
        """An instance of ``cls`` in a worker process of its own, a CPU to itself (not restarted: the caller rebuilds it)."""
        actor = self._tasks.get(_CheckedActor)
        if actor is None:
            actor = self._tasks[_CheckedActor] = self.ray.remote(num_cpus=1, max_restarts=0)(_CheckedActor)
        return actor.remote(self.fingerprint, cls, *args)

    def call(self, actor, method: str, *args) -> Future:
        return self.future(actor.call.remote(method, *args))

    def kill(self, actor) -> None:
        self.ray.kill(actor, no_restart=True)

    def future(self, ref) -> Future:
        ray = self.ray
        out: Future = Future()
        out.ref = ref

        def done(inner: Future) -> None:
            try:
                out.set_result(inner.result())
            except ray.exceptions.RayTaskError as err:  # the task raised: that exception, as raised locally
                cause = err.cause
                out.set_exception(cause if isinstance(cause, BaseException) else err)
            except BaseException as err:  # the worker or its node is gone (after the retries)
                out.set_exception(err)

        ref.future().add_done_callback(done)
        return out

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:  # noqa: ARG002 -- as ProcessPoolExecutor's
        """Leave the cluster: a local one stops, an existing one cancels this driver's tasks."""
        self.ray.shutdown()

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def lost_worker(err: BaseException) -> bool:
    """Whether a failed call means its worker process died (a killed process, a lost node), not a bug."""
    from concurrent.futures.process import BrokenProcessPool

    if isinstance(err, BrokenProcessPool):
        return True
    ray = _loaded_ray()
    return ray is not None and isinstance(err, ray.exceptions.RayActorError | ray.exceptions.WorkerCrashedError)


def _loaded_ray():
    import sys

    return sys.modules.get("ray")


class Workers:
    """``n`` instances of ``cls(*args, index, n)``, each in a process of its own: forked here, or Ray actors.

    :meth:`call` runs a method of one of them and gives a Future; one whose process died can be
    :meth:`restart`\\ ed, fresh (the caller gives it again what it needs).
    """

    def __init__(self, cls, args: tuple, n: int, ray: RayPool | None = None):
        self.cls, self.args, self.n, self.ray = cls, args, n, ray
        self.handles = [self._start(i) for i in range(n)]

    def _start(self, i: int):
        args = (*self.args, i, self.n)
        if self.ray is not None:
            return self.ray.actor(self.cls, *args)
        pool = local_pool(1)
        pool.submit(_create, self.cls, args)
        return pool

    def call(self, i: int, method: str, *args) -> Future:
        if self.ray is not None:
            return self.ray.call(self.handles[i], method, *args)
        return self.handles[i].submit(_call, method, args)

    def restart(self, i: int) -> None:
        self._stop(i, wait=False)  # its process is dead: nothing to wait for
        self.handles[i] = self._start(i)

    def _stop(self, i: int, wait: bool) -> None:
        if self.ray is not None:
            try:
                self.ray.kill(self.handles[i])
            except Exception:  # noqa: BLE001 -- already gone with its node: nothing to stop
                pass
        else:
            self.handles[i].shutdown(wait=wait, cancel_futures=not wait)  # a worker runs one call at a time

    def shutdown(self) -> None:
        """Stop every worker, waiting for each to exit (at most the call it is running).

        A live pool shut down without waiting can lose its manager thread to a closed handle
        (CPython gh-94440) before the worker is told to exit; the interpreter's exit then
        waits for that worker forever (a ``check --jobs 2`` once hung so after its verdict).
        """
        for i in range(self.n):
            self._stop(i, wait=True)


_instance = None  # in a local worker process: its Workers instance


def _create(cls, args: tuple) -> None:
    global _instance
    _instance = cls(*args)


def _call(method: str, args: tuple):
    return getattr(_instance, method)(*args)
