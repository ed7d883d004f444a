"""Timeline export: a Chrome trace-event JSON file that Perfetto's UI (ui.perfetto.dev) opens.

Tracks: one process "host" with a thread per pCPU showing which vCPU runs on it; one
process per guest with a thread per vCPU showing its state (running, spinning, halted,
runnable) and instants for kicks, halts and pause-loop exits; and a thread per lock
showing who holds it.  Only built when asked for (``--trace``): the engine calls these
hooks only when a tracer is installed.

Events are written to the file as they are produced (a slice when it ends), so memory does
not grow with simulated time: the tracer keeps only the slices still open, one per track.
The file is the JSON object format, ``{"traceEvents": [...], "displayTimeUnit": "ns"}``;
the track names (``M`` events) come last, when every track is known.  A ``window`` of
cycles keeps only what happens within it, slices crossing its edges clipped to them.
"""

from __future__ import annotations

import json
from typing import TextIO

HOST_PID = 1

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_quoted: dict[str, str] = {}  # a name as a JSON string: few distinct ones, many events


def _quote(name: str) -> str:
    text = _quoted.get(name)
    if text is None:
        text = _quoted[name] = json.dumps(name)
    return text


class Tracer:
    def __init__(self, freq_mhz: int, window: tuple[int, int] | None = None):
        """A tracer of what happens within ``window`` (cycles [lo, hi]; None: all of it)."""
        self.freq = freq_mhz
        self.out: TextIO | None = None
        self.early: list[str] = []  # what the guests' boot traced before the file was started
        self.lo, self.hi = window if window is not None else (0, float("inf"))
        self.open_state: dict[object, tuple[str, int, int, int]] = {}  # vcpu -> (name, start, pid, tid)
        self.open_spin: dict[object, int] = {}
        self.open_pcpu: dict[int, tuple[str, int]] = {}
        self.open_cs: dict[tuple, int] = {}
        self.names: dict[tuple[int, int], str] = {}
        self.lock_tids: dict[tuple[int, object], int] = {}
        self.first = True

    def start(self, out: TextIO) -> None:
        """Write the trace to ``out`` (the caller closes it) from now on, and what came before."""
        self.out = out
        out.write('{"traceEvents":[')
        out.write("".join(self.early))
        self.early.clear()

    def _us(self, t: int) -> float:
        return t / self.freq

    def _put(self, text: str) -> None:
        text = text if self.first else "," + text
        self.first = False
        if self.out is None:
            self.early.append(text)
        else:
            self.out.write(text)

    def _emit(self, event: dict) -> None:
        self._put(_dumps(event))

    def _span(self, name: str, start: int, end: int, pid: int, tid: int, cat: str, args: dict | None = None):
        if start < self.lo or end > self.hi:  # clipped to the window; left out if nothing is inside
            start, end = max(start, self.lo), min(end, self.hi)
            if start >= end:
                return
        # what json.dumps(event) writes, by hand: a slice is most of the file (floats are repr()'d
        # by json too), and the encoder's per-call set-up cost more than the simulation
        freq = self.freq
        extra = ',"args":' + _dumps(args) if args else ""
        self._put(f'{{"name":{_quote(name)},"ph":"X","ts":{start / freq!r},"dur":{(end - start) / freq!r},'
                  f'"pid":{pid},"tid":{tid},"cat":"{cat}"{extra}}}')  # fmt: skip

    @staticmethod
    def _ids(v) -> tuple[int, int]:
        return 2 + v.guest.index, v.cpu

    # ------------------------------------------------------------- hooks called by the engine
    def vcpu_state(self, t: int, v, state: str) -> None:
        pid, tid = self._ids(v)
        self.names.setdefault((pid, tid), f"{v}")
        previous = self.open_state.pop(v, None)
        if previous is not None:
            self._span(previous[0], previous[1], t, pid, tid, "vcpu")
        if state != "done":
            self.open_state[v] = (state, t, pid, tid)

    def pcpu(self, t: int, pcpu: int, v) -> None:
        previous = self.open_pcpu.pop(pcpu, None)
        if previous is not None:
            self._span(previous[0], previous[1], t, HOST_PID, pcpu, "pcpu")
        if v is not None:
            self.open_pcpu[pcpu] = (f"{v}", t)

    def spin(self, t: int, v, begin: bool) -> None:
        if begin:
            self.open_spin[v] = t
            return
        start = self.open_spin.pop(v, None)
        if start is not None:
            pid, tid = self._ids(v)
            self._span("spinning", start, t, pid, tid, "spin")

    def critical_section(self, t: int, v, lock_id, begin: bool) -> None:
        key = (v.guest.index, lock_id)
        if begin:
            self.open_cs[key] = t
            return
        start = self.open_cs.pop(key, None)
        if start is None:
            return
        pid = 2 + v.guest.index
        tid = self.lock_tids.setdefault(key, 1000 + len(self.lock_tids))
        self.names.setdefault((pid, tid), f"lock {lock_id} holder")
        self._span(f"{v}", start, t, pid, tid, "lock", {"lock": str(lock_id)})

    def instant(self, t: int, v, name: str, args: dict | None = None) -> None:
        if t < self.lo or t > self.hi:
            return
        pid, tid = self._ids(v)
        event = {"name": name, "ph": "i", "s": "t", "ts": self._us(t), "pid": pid, "tid": tid, "cat": "event"}
        if args:
            event["args"] = args
        self._emit(event)

    # ------------------------------------------------------------- output
    def finish(self, t: int, sim) -> None:
        """Close every open span at ``t``, name the tracks and end the file's JSON."""
        for name, start, pid, tid in list(self.open_state.values()):
            self._span(name, start, t, pid, tid, "vcpu")
        for v, start in list(self.open_spin.items()):
            if start > t:  # resumed after a switch-in that ends after the trace does
                continue
            pid, tid = self._ids(v)
            self._span("spinning", start, t, pid, tid, "spin")
        for pcpu, (name, start) in list(self.open_pcpu.items()):
            self._span(name, start, t, HOST_PID, pcpu, "pcpu")
        self.open_state.clear()
        self.open_spin.clear()
        self.open_pcpu.clear()
        self._emit({"name": "process_name", "ph": "M", "pid": HOST_PID, "args": {"name": "host pCPUs"}})
        for p in sim.pcpus:
            self._emit({"name": "thread_name", "ph": "M", "pid": HOST_PID, "tid": p.id, "args": {"name": f"pCPU {p.id}"}})
        for g in sim.guests:
            self._emit({"name": "process_name", "ph": "M", "pid": 2 + g.index, "args": {"name": f"guest {g.name}"}})
        for (pid, tid), name in sorted(self.names.items()):
            self._emit({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}})
        if self.out is not None:
            self.out.write('],"displayTimeUnit":"ns"}')
