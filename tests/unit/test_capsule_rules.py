"""Capsule rules shared by every face."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hangar.core.capsules.rules import (
    check_resources,
    check_template_name,
    command_argv,
    sandbox_path,
)
from hangar.core.config import CapsuleSettings
from hangar.core.errors import InvalidInput


@pytest.mark.parametrize(
    ("given_path", "expected"),
    [
        ("/etc/hosts", "/etc/hosts"),
        ("notes.txt", "/home/user/notes.txt"),
        ("/a/./b//c/", "/a/b/c"),
        ("/a/b/../c", "/a/c"),
        ("/", "/"),
    ],
)
def test_sandbox_path_normalises(given_path: str, expected: str) -> None:
    assert sandbox_path(given_path) == expected


@pytest.mark.parametrize("bad", ["", "/..", "/../etc/passwd", "/a/../../b", "a\0b", "x" * 5000])
def test_sandbox_path_refuses_escapes_and_junk(bad: str) -> None:
    with pytest.raises(InvalidInput):
        sandbox_path(bad)


@given(st.lists(st.sampled_from(["a", "b", "..", ".", ""]), max_size=12))
def test_sandbox_path_never_climbs_above_root(parts: list[str]) -> None:
    try:
        result = sandbox_path("/" + "/".join(parts))
    except InvalidInput:
        return
    assert result.startswith("/")
    assert ".." not in result.split("/")


def test_command_argv() -> None:
    assert command_argv("ls", ["-l", "/"]) == ["ls", "-l", "/"]
    assert command_argv("echo hi | wc -c", []) == ["/bin/sh", "-c", "echo hi | wc -c"]
    with pytest.raises(InvalidInput):
        command_argv("  ", [])


def test_resource_bounds() -> None:
    settings = CapsuleSettings(max_vcpus=4, max_memory_mb=1024)
    check_resources(settings, 4, 1024, 0)
    for vcpus, memory, timeout in [
        (0, 512, 0),
        (5, 512, 0),
        (1, 64, 0),
        (1, 2048, 0),
        (1, 512, -1),
    ]:
        with pytest.raises(InvalidInput):
            check_resources(settings, vcpus, memory, timeout)


def test_template_names() -> None:
    assert check_template_name("my-snap_1.2") == "my-snap_1.2"
    for bad in ["", "Upper", "-lead", "a" * 65, "sp ace", "../x"]:
        with pytest.raises(InvalidInput):
            check_template_name(bad)
