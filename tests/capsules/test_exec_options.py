"""Wrenn exec's `envs` and `cwd` reach the command in a real sandbox (jail runtime); the
contract's `background` is refused with 400 naming it, never silently run in the foreground
(issue 14, item 8)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from capsules.helpers import run
from support.wrenn import Account, error_of

Capsule = dict[str, Any]


def test_envs_and_cwd_reach_the_command(
    capi: httpx.Client, owner: Account, capsule: Capsule
) -> None:
    cid = capsule["id"]
    out = run(capi, owner, cid, 'echo "$GREETING"; pwd', envs={"GREETING": "hi there"}, cwd="/tmp")
    assert (out["stdout"], out["exit_code"]) == ("hi there\n/tmp\n", 0)
    # Without args too (argv directly, no shell), and the user's own variables stay.
    out = run(capi, owner, cid, "printenv", args=["GREETING", "HOME"], envs={"GREETING": "x"})
    assert out["stdout"] == "x\n/home/user\n"
    # The default is the home directory; a relative cwd starts there.
    assert run(capi, owner, cid, "pwd")["stdout"] == "/home/user\n"
    assert run(capi, owner, cid, "mkdir -p work/a")["exit_code"] == 0
    assert run(capi, owner, cid, "pwd", cwd="work/a")["stdout"] == "/home/user/work/a\n"


def test_a_missing_cwd_fails_like_a_shell(
    capi: httpx.Client, owner: Account, capsule: Capsule
) -> None:
    out = run(capi, owner, capsule["id"], "pwd", cwd="/no/such/dir")
    assert out["exit_code"] == 127
    assert "/no/such/dir" in out["stderr"]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"background": True}, "background"),
        ({"background": True, "tag": "web"}, "background"),
        ({"envs": {"A=B": "1"}}, "A=B"),
        ({"envs": {"A": "nul\u0000"}}, "'A'"),
        ({"cwd": "../../.."}, "../../.."),
    ],
)
def test_what_cannot_be_honoured_is_refused(
    capi: httpx.Client, owner: Account, capsule: Capsule, extra: dict[str, Any], named: str
) -> None:
    resp = capi.post(
        f"/v1/capsules/{capsule['id']}/exec",
        json={"cmd": "touch /tmp/ran", **extra},
        headers=owner.headers,
    )
    assert resp.status_code == 400, resp.text
    error = error_of(resp)
    assert error["code"] == "invalid_request"
    assert named in error["message"]
    assert run(capi, owner, capsule["id"], "test -e /tmp/ran; echo $?")["stdout"] == "1\n"


def test_background_false_and_its_tag_run_in_the_foreground(
    capi: httpx.Client, owner: Account, capsule: Capsule
) -> None:
    out = run(capi, owner, capsule["id"], "echo fg", background=False, tag="ignored")
    assert (out["stdout"], out["exit_code"]) == ("fg\n", 0)
