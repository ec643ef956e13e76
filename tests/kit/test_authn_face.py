"""Every authenticator through a real server: a face whose chain holds them all."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin, Subprotocol

from hangar.core.db import Database
from hangar.core.gpushare.service import GpuShareService, ReportedGpu
from hangar.core.identity.principal import CredentialKind, Principal
from hangar.core.security.opaque import hash_secret
from hangar.faces.wrenn import ids
from hangar.server.faces import FACES
from hangar.web.authn.cookie import CSRF_COOKIE, SESSION_COOKIE
from kit import authn_face
from support.live import LiveServer, make_settings, run_in_thread
from support.wrenn import Account, Wrenn


@pytest.fixture(scope="module")
def live(
    backend: str, database_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp(f"authn-{backend}"), database_url, None)
    with run_in_thread(backend, settings, faces=(*FACES, authn_face.FACE)) as server:
        yield server


@pytest.fixture
def face(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{live.url}/authn", timeout=30) as client:
        yield client


@pytest.fixture
def user(live: LiveServer) -> Account:
    with httpx.Client(base_url=live.wrenn_url, timeout=30) as wrenn:
        return Wrenn(wrenn).signup(name="Authn")


@pytest.fixture
def key(live: LiveServer, user: Account) -> str:
    with httpx.Client(base_url=live.wrenn_url, timeout=30) as wrenn:
        created: str = Wrenn(wrenn).create_key(user, "authn")["key"]
        return created


@pytest.fixture
async def db(live: LiveServer) -> AsyncIterator[Database]:
    database = Database(live.settings.resolved_database_url())
    yield database
    await database.dispose()


def uid(user: Account) -> str:
    return ids.decode(ids.USER, user.user_id)


def tid(user: Account) -> str:
    return ids.decode(ids.TEAM, user.team_id)


def offer(*protocols: str) -> list[Subprotocol]:
    return [Subprotocol(p) for p in protocols]


def ws_url(live: LiveServer) -> str:
    return live.url.replace("http", "ws", 1) + "/authn/v1/ws"


# --- WebSocket subprotocol ---------------------------------------------------------------


def test_a_jwt_in_the_subprotocol_authenticates_and_only_the_marker_is_selected(
    live: LiveServer, user: Account
) -> None:
    with connect(ws_url(live), subprotocols=offer("hangar.bearer", user.token)) as ws:
        assert ws.subprotocol == "hangar.bearer"
        seen = ws.recv(timeout=10)
    assert uid(user) in seen
    assert "user_token" in seen


def test_an_api_key_in_the_subprotocol_authenticates(live: LiveServer, key: str) -> None:
    with connect(ws_url(live), subprotocols=offer("hangar.api-key", key)) as ws:
        assert ws.subprotocol == "hangar.api-key"
        assert "api_key" in ws.recv(timeout=10)


@pytest.mark.parametrize("offered", [["hangar.bearer", "not-a-jwt"], ["hangar.bearer"]])
def test_a_bad_subprotocol_credential_is_refused(live: LiveServer, offered: list[str]) -> None:
    with pytest.raises(InvalidStatus) as refusal:
        connect(ws_url(live), subprotocols=offer(*offered))
    assert refusal.value.response.status_code == 401


def test_headers_still_work_on_a_websocket(live: LiveServer, key: str) -> None:
    with connect(ws_url(live), additional_headers={"X-API-Key": key}) as ws:
        assert ws.subprotocol is None
        assert "api_key" in ws.recv(timeout=10)


def test_wrenn_streams_read_the_subprotocol(live: LiveServer, user: Account) -> None:
    # No such capsule: authentication passed (404), where a bad credential is a 401.
    url = live.wrenn_url.replace("http", "ws", 1) + "/v1/capsules/cl-nosuchcapsule/exec/stream"
    for token, status in ((user.token, 404), ("not-a-jwt", 401)):
        with pytest.raises(InvalidStatus) as refusal:
            connect(url, subprotocols=offer("hangar.bearer", token))
        assert refusal.value.response.status_code == status


# --- Session cookie and CSRF -------------------------------------------------------------


def sign_in(face: httpx.Client, user: Account, **headers: str) -> httpx.Response:
    resp = face.post("/v1/session", headers={"Authorization": f"Bearer {user.token}", **headers})
    assert resp.status_code == 200, resp.text
    return resp


def set_cookies(resp: httpx.Response) -> dict[str, str]:
    return {c.split("=", 1)[0]: c for c in resp.headers.get_list("set-cookie")}


def test_the_session_cookie_is_httponly_lax_and_secure_only_over_https(
    face: httpx.Client, user: Account
) -> None:
    plain = set_cookies(sign_in(face, user))
    session, csrf = plain[SESSION_COOKIE].lower(), plain[CSRF_COOKIE].lower()
    assert "httponly" in session
    assert "samesite=lax" in session
    assert "secure" not in session
    assert "httponly" not in csrf
    assert "samesite=lax" in csrf
    # uvicorn trusts 127.0.0.1 as a proxy: its X-Forwarded-Proto makes the request HTTPS.
    behind_tls = set_cookies(sign_in(face, user, **{"X-Forwarded-Proto": "https"}))
    assert "secure" in behind_tls[SESSION_COOKIE].lower()
    assert "secure" in behind_tls[CSRF_COOKIE].lower()


def test_a_cookie_authenticates_reads_and_csrf_guards_mutations(
    face: httpx.Client, user: Account
) -> None:
    csrf = sign_in(face, user).json()["csrf"]
    assert face.cookies.get(CSRF_COOKIE) == csrf
    read = face.get("/v1/whoami")
    assert read.status_code == 200
    assert read.json()["user_id"] == uid(user)

    forged = face.post("/v1/whoami")
    assert forged.status_code == 403
    assert forged.json()["code"] == "csrf_failed"
    wrong = face.post("/v1/whoami", headers={"X-CSRF-Token": csrf + "x"})
    assert wrong.status_code == 403
    ok = face.post("/v1/whoami", headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200
    assert ok.json()["user_id"] == uid(user)


def test_a_forged_session_cookie_is_refused(face: httpx.Client) -> None:
    face.cookies.set(SESSION_COOKIE, "not-a-jwt")
    assert face.get("/v1/whoami").status_code == 401


def test_a_cross_origin_websocket_with_the_cookie_is_refused(
    live: LiveServer, face: httpx.Client, user: Account
) -> None:
    sign_in(face, user)
    cookie = f"{SESSION_COOKIE}={face.cookies.get(SESSION_COOKIE)}"
    with pytest.raises(InvalidStatus) as refusal:
        connect(
            ws_url(live),
            additional_headers={"Cookie": cookie},
            origin=Origin("https://evil.example"),
        )
    assert refusal.value.response.status_code == 403
    with connect(ws_url(live), additional_headers={"Cookie": cookie}) as ws:
        assert uid(user) in ws.recv(timeout=10)


# --- Personal access tokens and agent secrets ----------------------------------------------


def test_a_personal_access_token_is_looked_up_by_hash(face: httpx.Client, user: Account) -> None:
    token = "hpat_" + "ab" * 20
    principal = Principal(kind=CredentialKind.PERSONAL_TOKEN, team_id=tid(user), user_id=uid(user))
    authn_face.PATS.tokens[hash_secret(token)] = principal
    resp = face.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200
    assert resp.json()["kind"] == "personal_token"
    unknown = face.get("/v1/whoami", headers={"Authorization": "Bearer hpat_" + "cd" * 20})
    assert unknown.status_code == 401
    assert unknown.json()["code"] == "invalid_token"
    # A JWT is not a PAT: the next authenticator takes it.
    jwt = face.get("/v1/whoami", headers={"Authorization": f"Bearer {user.token}"})
    assert jwt.json()["kind"] == "user_token"


async def test_a_gpu_agent_secret_authenticates_its_agent(
    face: httpx.Client, user: Account, db: Database
) -> None:
    async with db.session() as session:
        agent, secret = await GpuShareService(session).register(
            tid(user),
            uid(user),
            hostname="gpu-1",
            os="linux",
            arch="x86_64",
            gpus=[ReportedGpu(gpu_id="0", vendor="nvidia", model="H200", vram_mb=1024)],
        )
        await session.commit()
    resp = face.get("/v1/whoami", headers={"X-Agent-Secret": secret})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "kind": "gpu_agent",
        "team_id": tid(user),
        "user_id": None,
        "api_key_id": None,
        "agent_id": agent.id,
    }
    assert face.get("/v1/whoami", headers={"X-Agent-Secret": "nope"}).status_code == 401


def test_a_bogus_host_token_is_refused(face: httpx.Client) -> None:
    assert face.get("/v1/whoami", headers={"X-Host-Token": "nope"}).status_code == 401


def test_no_credential_is_a_401(face: httpx.Client, tmp_path: Path) -> None:
    resp = face.get("/v1/whoami")
    assert resp.status_code == 401
