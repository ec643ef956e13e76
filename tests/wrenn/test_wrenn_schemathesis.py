"""Property-based conformance of the account APIs to `wrenn-openapi.yaml`, with schemathesis.

Each operation of issue 2 gets generated requests (positive mode: valid by the spec) sent to the
live server with a signed-up user's JWT. Path parameters are pointed at that user's real team and
real members most of the time, so the examples run the real code paths (204s, 403s for the owner,
404s for strangers) rather than only "team id does not match the token".

Checks: no 5xx, documented status codes, documented content types, response bodies matching the
response schemas.

The spec is found in `$HANGAR_SPECS_DIR` (default `<repo>/specs`).
`HANGAR_SCHEMATHESIS_EXAMPLES` sets the examples per operation (default 30).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.live import LiveServer
from support.spec import (
    ALL_BUT_STATUS,
    CHECKS,
    assert_refused_as_invalid,
    check_invalid_requests,
    load_wrenn_schema,
    with_lone_surrogate,
)
from support.wrenn import Account, Wrenn, bearer, unique_email

MAX_EXAMPLES = int(os.environ.get("HANGAR_SCHEMATHESIS_EXAMPLES", "30"))

# The operations of issue 2 (accounts, teams, API keys), by operationId.
OPERATIONS = [
    "signup",
    "login",
    "switchTeam",
    "oauthRedirect",
    "oauthCallback",
    "createAPIKey",
    "listAPIKeys",
    "deleteAPIKey",
    "searchUsers",
    "listTeams",
    "createTeam",
    "getTeam",
    "renameTeam",
    "deleteTeam",
    "listTeamMembers",
    "addTeamMember",
    "updateMemberRole",
    "removeTeamMember",
    "leaveTeam",
]


@pytest.fixture(scope="module")
def schema() -> schemathesis.BaseSchema:
    return load_wrenn_schema()


@dataclass
class World:
    """Accounts the generated requests act as, on one live server."""

    server: LiveServer
    wrenn: Wrenn
    owner: Account  # owns `owner.team_id`, the team most examples target
    member: Account  # a plain member of that team, token scoped to it
    outsider: Account  # belongs to no team of the owner
    session: requests.Session = field(default_factory=requests.Session)

    def ensure_member(self) -> None:
        """Put `member` back into the owner's team as a plain member, whatever happened."""
        resp = self.wrenn.add_member(self.owner, self.member.email)
        assert resp.status_code in (201, 400), resp.text  # 400: already a member
        self.wrenn.http.patch(
            f"/v1/teams/{self.owner.team_id}/members/{self.member.user_id}",
            json={"role": "member"},
            headers=self.owner.headers,
        )


@pytest.fixture(scope="module")
def world(server: LiveServer) -> Iterator[World]:
    with server.client() as http:
        wrenn = Wrenn(http)
        owner = wrenn.signup(name="Spec Owner")
        member = wrenn.join(owner, wrenn.signup(name="Spec Member"))
        outsider = wrenn.signup(name="Spec Outsider")
        w = World(server, wrenn, owner, member, outsider)
        yield w
        w.session.close()


# A Prepare hook adjusts one generated case before it is sent, steered by a drawn `choice`
# ("a", "b" or "c"; "c" mostly leaves the generated values alone) and able to draw more from
# `data`; it returns the token to send (None: no Authorization header).
Prepare = Callable[[World, Any, str, st.DataObject], "str | None"]
VALID_TEAM_NAMES = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9 _]{0,127}", fullmatch=True)


def _team_path(w: World, case: Any, choice: str, data: st.DataObject) -> str:
    case.path_parameters["id"] = w.owner.team_id
    if choice == "a" and isinstance(case.body, dict) and "name" in case.body:
        case.body["name"] = data.draw(VALID_TEAM_NAMES)  # renameTeam: most names are invalid
    return w.owner.token


def _create_team(w: World, case: Any, choice: str, data: st.DataObject) -> str:
    if choice == "a" and isinstance(case.body, dict):
        case.body["name"] = data.draw(VALID_TEAM_NAMES)
    return w.owner.token


def _search(w: World, case: Any, choice: str, data: st.DataObject) -> str:
    """Generated prefixes rarely contain '@'; steer some to real addresses."""
    if choice == "a":
        email = w.member.email
        case.query["email"] = email[: data.draw(st.integers(email.index("@") + 1, len(email)))]
    elif choice == "b":
        case.query["email"] = case.query.get("email", "") + "@"
    return w.owner.token


def _member_path(w: World, case: Any, choice: str, data: st.DataObject) -> str:
    """`/teams/{id}/members/{uid}` on a real team: a member, the owner, or a generated uid."""
    w.ensure_member()
    case.path_parameters["id"] = w.owner.team_id
    if choice == "a":
        case.path_parameters["uid"] = w.member.user_id
    elif choice == "b":
        case.path_parameters["uid"] = w.owner.user_id
    return w.owner.token


def _delete_team(w: World, case: Any, choice: str, data: st.DataObject) -> str:
    """Delete a throwaway team (never the one the other operations use)."""
    doomed = w.wrenn.new_team_as(w.owner, "Throwaway")
    if choice == "a":
        case.path_parameters["id"] = doomed.team_id
    elif choice == "b":
        case.path_parameters["id"] = w.owner.team_id  # not the token's team: 403
    return doomed.token


def _leave(w: World, case: Any, choice: str, data: st.DataObject) -> str:
    w.ensure_member()
    case.path_parameters["id"] = w.owner.team_id
    return w.member.token if choice in ("a", "c") else w.owner.token  # owner: 403


def _delete_key(w: World, case: Any, choice: str, data: st.DataObject) -> str:
    if choice == "a":
        case.path_parameters["id"] = w.wrenn.create_key(w.owner, "doomed")["id"]
    elif choice == "b":
        case.path_parameters["id"] = w.wrenn.create_key(w.outsider, "not yours")["id"]
    return w.owner.token


def _switch(w: World, case: Any, choice: str, data: st.DataObject) -> str:
    if isinstance(case.body, dict):
        if choice == "a":
            case.body["team_id"] = w.owner.team_id
        elif choice == "b":
            case.body["team_id"] = w.outsider.team_id  # not a member: 403
    return w.owner.token


def _add_member(w: World, case: Any, choice: str, data: st.DataObject) -> str:
    case.path_parameters["id"] = w.owner.team_id
    if isinstance(case.body, dict):
        if choice == "a":
            # A real account not yet in the team (201); take it out again for the next example.
            w.wrenn.http.delete(
                f"/v1/teams/{w.owner.team_id}/members/{w.outsider.user_id}",
                headers=w.owner.headers,
            )
            case.body["email"] = w.outsider.email
        elif choice == "b":
            w.ensure_member()
            case.body["email"] = w.member.email  # already a member: 400
    return w.owner.token


def _login(w: World, case: Any, choice: str, data: st.DataObject) -> None:
    if choice == "a" and isinstance(case.body, dict):
        case.body.update(email=w.owner.email, password=w.owner.password)


def _signup(w: World, case: Any, choice: str, data: st.DataObject) -> None:
    if choice == "a" and isinstance(case.body, dict):
        case.body["email"] = w.owner.email  # taken: 409
    elif choice == "b" and isinstance(case.body, dict):
        case.body["email"] = unique_email("spec")


def _no_auth(w: World, case: Any, choice: str, data: st.DataObject) -> None:
    return None


def _owner(w: World, case: Any, choice: str, data: st.DataObject) -> str:
    return w.owner.token


PREPARE: dict[str, Prepare] = {
    "signup": _signup,
    "login": _login,
    "switchTeam": _switch,
    "oauthRedirect": _no_auth,
    "oauthCallback": _no_auth,
    "createAPIKey": _owner,
    "listAPIKeys": _owner,
    "deleteAPIKey": _delete_key,
    "searchUsers": _search,
    "listTeams": _owner,
    "createTeam": _create_team,
    "getTeam": _team_path,
    "renameTeam": _team_path,
    "deleteTeam": _delete_team,
    "listTeamMembers": _team_path,
    "addTeamMember": _add_member,
    "updateMemberRole": _member_path,
    "removeTeamMember": _member_path,
    "leaveTeam": _leave,
}


def _refused_api_key_name(operation_id: str, case: Any, status: int) -> bool:
    """Whether this is createAPIKey refusing a name it cannot store.

    Spec gap, excluded narrowly: createAPIKey documents only 201 and 401, yet any server must
    refuse some bodies (Wrenn itself answers 400 `invalid_request` for a body it cannot decode).
    Hangar bounds key names to 128 characters and refuses NUL characters (PostgreSQL cannot store
    them), with 400 in Wrenn's error shape. Only that one answer is let through here.
    """
    if operation_id != "createAPIKey" or status != 400 or not isinstance(case.body, dict):
        return False
    name = case.body.get("name")
    return isinstance(name, str) and (len(name.strip()) > 128 or "\x00" in name)


@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_operation_conforms_to_the_wrenn_spec(
    schema: schemathesis.BaseSchema, world: World, operation_id: str
) -> None:
    operation = schema.find_operation_by_id(operation_id)
    prepare = PREPARE[operation_id]
    base_url = world.server.wrenn_url

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), choice=st.sampled_from("abc"), data=st.data())
    def run(case: Any, choice: str, data: st.DataObject) -> None:
        token = prepare(world, case, choice, data)
        headers = bearer(token) if token else {}
        if with_lone_surrogate(case, data):
            response = case.call(base_url=base_url, session=world.session, headers=headers)
            assert_refused_as_invalid(case, response, headers)
            return
        response = case.call(base_url=base_url, session=world.session, headers=headers)
        if _refused_api_key_name(operation_id, case, response.status_code):
            case.validate_response(
                response,
                checks=ALL_BUT_STATUS,
                headers=headers,
            )
            assert response.json()["error"]["code"] == "invalid_request"
            return
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()


@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_invalid_requests_never_cause_a_server_error(
    schema: schemathesis.BaseSchema, world: World, operation_id: str
) -> None:
    """Negative mode: requests that break the spec (wrong types, missing fields) are refused
    with a 4xx, never a 5xx. Status codes are not checked: the spec documents few 4xx."""
    prepare = PREPARE[operation_id]

    def steer(case: Any, choice: str, data: st.DataObject) -> dict[str, str]:
        token = prepare(world, case, choice, data)
        return bearer(token) if token else {}

    check_invalid_requests(
        schema,
        operation_id,
        steer,
        base_url=world.server.wrenn_url,
        session=world.session,
        max_examples=max(MAX_EXAMPLES // 2, 1),
        checks=CHECKS[:1],
        face_prefix="/wrenn/",
    )
