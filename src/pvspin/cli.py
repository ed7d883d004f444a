"""The ``pvspin`` command."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="The Linux paravirt queued spinlock, executable, measurable and checkable.")


@app.command()
def demo() -> None:
    """The seed's story in one minute."""
    typer.echo("pvspin demo: not yet")


def main() -> None:
    app()
