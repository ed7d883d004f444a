"""Output paths, refused before the work they would hold rather than after it."""

from __future__ import annotations

import os
from pathlib import Path


def unwritable(option: str, path: str, folder: bool = False) -> str | None:
    """Why ``path`` (a file, or with ``folder`` a directory to create or fill) cannot be written, or None.

    Looks, without creating anything, at the path itself and at its nearest existing ancestor.
    """
    if not path:
        return f"{option} '': give a path"
    target = Path(path)
    if target.exists():
        if folder and not target.is_dir():
            return f"{option} {path}: exists and is not a directory"
        if not folder and target.is_dir():
            return f"{option} {path}: is a directory"
        if not os.access(target, os.W_OK):
            return f"{option} {path}: not writable"
        return None
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{option} {path}: {parent} is not a directory"
    if not folder and parent != target.parent:
        return f"{option} {path}: no such directory {target.parent}"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{option} {path}: cannot create it in {parent}"
    return None
