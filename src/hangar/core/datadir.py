"""The data directory holds password hashes, signing and sealing keys: only its owner reads it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def make_private_dir(path: Path) -> None:
    """Create `path` (0700) if it is missing, and tighten it to 0700 if it is not."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)


def make_private_files(directory: Path) -> None:
    """0600 for the regular files directly in `directory` (those older versions left 0644).

    Subdirectories are left alone: the local agent's state lives in one, with its own modes.
    The 0700 directory already keeps other users out of everything below it.
    """
    for entry in os.scandir(directory):
        # A symlink's mode is its target's: never chmod through one.
        if entry.is_file(follow_symlinks=False) and stat.S_IMODE(entry.stat().st_mode) & 0o077:
            os.chmod(entry.path, FILE_MODE)


def secure_data_dir(path: Path) -> None:
    """The data directory private to this account: 0700, its own files 0600."""
    make_private_dir(path)
    make_private_files(path)
