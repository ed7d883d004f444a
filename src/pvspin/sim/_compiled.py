"""The optional compiled engine: which modules ``make compile`` builds with mypyc, and a guard.

``make compile`` compiles the simulator's hot modules with mypyc into extension modules beside
their sources (``guestcpu.cpython-311-*.so`` next to ``guestcpu.py``), which Python then imports
instead; ``make uncompile`` removes them.  Without them — no compiler, another Python, or never
asked for — the same modules run as plain Python, with byte-identical results
(``tests/test_sim_digest.py`` passes either way).

An extension module does not follow later edits of its source, so ``make compile`` records each
source's SHA-256 in ``.compiled``, and importing :mod:`pvspin.sim` refuses a compiled module whose
source has changed since, rather than run stale code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

MODULES = ("events", "cache", "vcpu", "hostsched", "cfs", "pinned", "hypervisor", "guestcpu")
HERE = Path(__file__).resolve().parent
STAMP = HERE / ".compiled"  # sha256sum's output for the compiled sources


def compiled() -> list[str]:
    """The modules of :data:`MODULES` that have a compiled extension beside their source."""
    return [name for name in MODULES if any(HERE.glob(f"{name}.*.so"))]


def check() -> None:
    """Refuse compiled modules built from another version of their source."""
    built = compiled()
    if not built:
        return
    recorded = {}
    if STAMP.is_file():
        for line in STAMP.read_text().splitlines():
            digest, _, name = line.partition("  ")
            recorded[name] = digest
    for name in built:
        source = f"{name}.py"
        if recorded.get(source) != hashlib.sha256((HERE / source).read_bytes()).hexdigest():
            raise ImportError(
                f"pvspin/sim/{name} is compiled from another version of {source}: "
                "run `make compile` again, or `make uncompile` for the pure-Python engine"
            )


def build() -> None:
    """Compile :data:`MODULES` with mypyc in place and record their sources' hashes (``make compile``)."""
    import subprocess
    import sys

    src = HERE.parents[1]
    paths = [f"pvspin/sim/{name}.py" for name in MODULES]
    subprocess.run([sys.executable, "-m", "mypyc", "--config-file", str(src.parent / "pyproject.toml"), *paths],
                   cwd=src, check=True)  # fmt: skip
    STAMP.write_text("".join(f"{hashlib.sha256((HERE / f'{n}.py').read_bytes()).hexdigest()}  {n}.py\n" for n in MODULES))


if __name__ == "__main__":
    build()
