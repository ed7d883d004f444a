"""The ``pvspin`` command."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="The Linux paravirt queued spinlock, executable, measurable and checkable.")


@app.command()
def demo() -> None:
    """The seed's story in one minute."""
    typer.echo("pvspin demo: not yet")


@app.command()
def patch(
    host: str = typer.Option("baremetal", help="baremetal, kvm or kvm-nopv"),
    kernel: str = typer.Option("paravirt", help="paravirt or no-paravirt (!PARAVIRT)"),
    lock: str = typer.Option(None, help="qspinlock, pvqspinlock, pvqspinlock-4.2, virt-tas or ticket (default: what the build runs)"),
    no_patching: bool = typer.Option(False, "--no-patching", help="boot with noreplace-paravirt"),
    patch_era: str = typer.Option("fixed", help="fixed, or 4.2: callee-save sites stay indirect on guests"),
    nopvspin: bool = typer.Option(False, "--nopvspin", help="boot with nopvspin"),
    cpus: str = typer.Option("4", help="vCPUs of the guest"),
    json_out: bool = typer.Option(False, "--json", help="a JSON list of sites on stdout"),
) -> None:
    """The paravirt lock call sites of a booted kernel: x86-64 bytes before and after apply_paravirt."""
    import json

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .kernel.build import boot_kernel
    from .machine.memory import Memory

    try:
        if not cpus.isdigit():
            raise ValueError(f"--cpus must be a positive integer, got {cpus!r}")
        guest = boot_kernel(Memory(), int(cpus), kernel=kernel, host=host, lock=lock, nopvspin=nopvspin,
                            patching=not no_patching, patch_era=patch_era)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    rows = guest.patch_table()
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{kernel} kernel on {host}: runs {guest.name}")
    for column in ("site", "op", "before", "after", "after asm"):
        table.add_column(column, no_wrap=column in ("before", "after"), overflow="fold")
    for r in rows:
        table.add_row(r["where"], r["op"], r["before"], r["after"], escape(r["after_asm"]))
    console = Console()
    console.print(table if rows else f"{kernel} kernel on {host}: runs {guest.name}, no patch sites (native code inline)")
    for line in guest.boot_log:
        console.print(line)


def main() -> None:
    app()
