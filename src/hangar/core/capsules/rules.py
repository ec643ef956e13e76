"""Rules about capsules that every face shares."""

from __future__ import annotations

import re

from hangar.core.config import CapsuleSettings
from hangar.core.errors import InvalidInput

HOME = "/home/user"
MAX_NAME = 64
_TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def check_resources(
    settings: CapsuleSettings, vcpus: int, memory_mb: int, timeout_sec: int
) -> None:
    """Refuse sizes outside the configured bounds."""
    if not settings.min_vcpus <= vcpus <= settings.max_vcpus:
        raise InvalidInput(f"vcpus must be between {settings.min_vcpus} and {settings.max_vcpus}")
    if not settings.min_memory_mb <= memory_mb <= settings.max_memory_mb:
        raise InvalidInput(
            f"memory_mb must be between {settings.min_memory_mb} and {settings.max_memory_mb}"
        )
    if not 0 <= timeout_sec <= settings.max_timeout_sec:
        raise InvalidInput(f"timeout_sec must be between 0 and {settings.max_timeout_sec}")


def check_name(name: str | None) -> str | None:
    """A capsule or snapshot display name: 1-64 printable characters, trimmed."""
    if name is None:
        return None
    name = name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise InvalidInput(f"name must be 1-{MAX_NAME} printable characters")
    return name


def check_disk_gb(settings: CapsuleSettings, disk_gb: int | None, minimum: int) -> int | None:
    """A disk size in GiB no smaller than `minimum` and the configured cap; None: no limit."""
    if disk_gb is None:
        return None
    if not minimum <= disk_gb <= settings.max_disk_gb:
        raise InvalidInput(f"disk size must be between {minimum} and {settings.max_disk_gb} GiB")
    return disk_gb


def check_template_name(name: str) -> str:
    """Template names: lowercase letters, digits, '.', '_' and '-', at most 64 characters."""
    if not _TEMPLATE_NAME.match(name):
        raise InvalidInput(
            "template name must be 1-64 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def sandbox_path(path: str) -> str:
    """An absolute, normalised path inside a capsule; relative paths start at the home dir.

    `..` that would climb above the capsule's root is refused rather than silently clamped,
    so a client learns its path was wrong instead of touching a different file.
    """
    if not path or len(path) > 4096 or "\0" in path:
        raise InvalidInput("path must be 1-4096 characters without NUL")
    full = path if path.startswith("/") else f"{HOME}/{path}"
    parts: list[str] = []
    for part in full.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidInput(f"path escapes the capsule: {path}")
            parts.pop()
        else:
            parts.append(part)
    return "/" + "/".join(parts)


def command_argv(cmd: str, args: list[str]) -> list[str]:
    """The argv to run: `cmd` with `args` directly, or a lone `cmd` through the shell."""
    if not cmd.strip():
        raise InvalidInput("cmd must not be empty")
    if args:
        return [cmd, *args]
    return ["/bin/sh", "-c", cmd]


def exec_env(env: dict[str, str]) -> dict[str, str]:
    """Environment variables for a command, refused when the OS could not pass them on."""
    for name, value in env.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise InvalidInput(f"invalid environment variable name or value: {name!r}")
    return env
