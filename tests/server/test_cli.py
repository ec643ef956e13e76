"""The `hangar` command line, run as a user would: subprocesses on real ports and databases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

import hangar
from hangar.core.db import Database
from hangar.core.identity.models import User
from support.fake_github import CLIENT_ID, CLIENT_SECRET, FakeGitHub, GitHubUser
from support.live import (
    database_url_of,
    free_port,
    fresh_postgres_database,
    hangar_command,
    run_cli,
    wait_http,
)
from support.processes import cli_env, stop_process
from support.wrenn import PASSWORD, Wrenn, bearer, error_of, unique_email

FRONTEND = "http://app.hangar.test"


@dataclass
class Served:
    """A `hangar serve` subprocess."""

    proc: subprocess.Popen[str]
    url: str
    face_url: str | None
    stderr: Path

    def log_lines(self) -> list[str]:
        return self.stderr.read_text().splitlines()

    def json_logs(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log_lines() if line.startswith("{")]

    def stop(self) -> int:
        stop_process(self.proc)
        return self.proc.returncode


@contextlib.contextmanager
def hangar_serve(
    data_dir: Path, env: dict[str, str], *, face_port: bool = True
) -> Iterator[Served]:
    port = free_port()
    args = ["serve", "--port", str(port), "--data-dir", str(data_dir)]
    face = None
    if face_port:
        fport = free_port()
        args += ["--face-port", f"wrenn={fport}"]
        face = f"http://127.0.0.1:{fport}"
    stderr = data_dir / "serve.stderr"
    data_dir.mkdir(parents=True, exist_ok=True)
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            hangar_command(*args), stdout=subprocess.DEVNULL, stderr=err, env=env, text=True
        )
    served = Served(proc, f"http://127.0.0.1:{port}", face, stderr)
    try:
        wait_http(f"{served.url}/livez", proc)
        if face:
            wait_http(f"{face}/v1/teams", proc)
        yield served
    finally:
        served.stop()


# -- one-shot commands --------------------------------------------------------------------------


def test_version() -> None:
    result = run_cli("version")
    assert result.returncode == 0
    assert result.stdout.strip() == hangar.__version__


def test_help_lists_the_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("serve", "db", "admin", "version"):
        assert command in result.stdout


def test_db_upgrade_migrates_and_is_idempotent(tmp_path: Path, fresh_db: str | None) -> None:
    env = cli_env(fresh_db)
    for _ in range(2):
        result = run_cli("db", "upgrade", "--data-dir", str(tmp_path), env=env)
        assert result.returncode == 0, result.stderr
        assert re.search(r"database at revision \d{4}", result.stderr), result.stderr
    if fresh_db is None:
        assert (tmp_path / "hangar.db").exists()

    async def tables() -> set[str]:
        from sqlalchemy import inspect

        db = Database(database_url_of(tmp_path, fresh_db))
        try:
            async with db.engine.connect() as conn:
                return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        finally:
            await db.dispose()

    assert {
        "users",
        "teams",
        "memberships",
        "api_keys",
        "oauth_identities",
        "alembic_version",
    } <= asyncio.run(tables())


def test_admin_create_user_then_login(tmp_path: Path, fresh_db: str | None) -> None:
    env = cli_env(fresh_db)
    email = unique_email("admin")
    created = run_cli(
        "admin",
        "create-user",
        "--email",
        email.upper(),
        "--password",
        PASSWORD,
        "--platform-admin",
        "--data-dir",
        str(tmp_path),
        env=env,
    )
    assert created.returncode == 0, created.stderr
    assert "(platform admin)" in created.stderr
    plain = run_cli(
        "admin",
        "create-user",
        "--email",
        unique_email("plain"),
        "--password",
        PASSWORD,
        "--name",
        "Plain User",
        "--data-dir",
        str(tmp_path),
        env=env,
    )
    assert plain.returncode == 0, plain.stderr
    assert "platform admin" not in plain.stderr

    duplicate = run_cli(
        "admin",
        "create-user",
        "--email",
        email,
        "--password",
        PASSWORD,
        "--data-dir",
        str(tmp_path),
        env=env,
    )
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    weak = run_cli(
        "admin",
        "create-user",
        "--email",
        unique_email(),
        "--password",
        "short",
        "--data-dir",
        str(tmp_path),
        env=env,
    )
    assert weak.returncode == 1
    assert "at least 8" in weak.stderr

    async def admin_flags() -> dict[str, bool]:
        db = Database(database_url_of(tmp_path, fresh_db))
        try:
            async with db.session() as session:
                rows = (await session.execute(select(User.email, User.is_platform_admin))).all()
                return dict(rows)  # type: ignore[arg-type]
        finally:
            await db.dispose()

    flags = asyncio.run(admin_flags())
    assert flags[email] is True
    assert sorted(flags.values()) == [False, True]

    with (
        hangar_serve(tmp_path, env, face_port=False) as served,
        httpx.Client(base_url=f"{served.url}/wrenn") as http,
    ):
        login = Wrenn(http).login(email, PASSWORD)
        assert login.status_code == 200, login.text
        body = login.json()
        assert body["email"] == email
        assert body["name"] == email.upper().split("@")[0]  # no --name: the address as given
        teams = http.get("/v1/teams", headers=bearer(body["token"])).json()
        assert [t["role"] for t in teams] == ["owner"]
        # This server has no GitHub OAuth app configured: the provider is "not found".
        for path in ("/v1/auth/oauth/github", "/v1/auth/oauth/github/callback?code=x&state=y"):
            resp = http.get(path)
            assert resp.status_code == 404
            assert error_of(resp)["code"] == "provider_not_found"


# -- hangar serve -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(
    backend: str, fake_github: FakeGitHub, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """`hangar serve --port P --data-dir D --face-port wrenn=P2`, configured by HANGAR_* env."""
    data_dir = tmp_path_factory.mktemp(f"serve-{backend}")
    oauth = {
        "HANGAR_OAUTH_GITHUB__CLIENT_ID": CLIENT_ID,
        "HANGAR_OAUTH_GITHUB__CLIENT_SECRET": CLIENT_SECRET,
        "HANGAR_OAUTH_GITHUB__AUTHORIZE_URL": f"{fake_github.url}/login/oauth/authorize",
        "HANGAR_OAUTH_GITHUB__TOKEN_URL": f"{fake_github.url}/login/oauth/access_token",
        "HANGAR_OAUTH_GITHUB__API_URL": fake_github.url,
        "HANGAR_WRENN__OAUTH_REDIRECT_URL": FRONTEND,
    }
    with contextlib.ExitStack() as stack:
        url = None
        if backend == "postgres":
            url = stack.enter_context(fresh_postgres_database())
        env = cli_env(url, **oauth)
        server = stack.enter_context(hangar_serve(data_dir, env))
        yield server
        # uvicorn re-raises the SIGINT it handled once shut down: 130 is a clean Ctrl-C exit.
        assert server.stop() in (0, 130)
        assert "Application shutdown complete." in server.stderr.read_text()


@pytest.mark.parametrize("probe", ["/healthz", "/livez", "/readyz"])
def test_health_probes(served: Served, probe: str) -> None:
    resp = httpx.get(f"{served.url}{probe}")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"
    if probe == "/healthz":
        assert resp.json()["checks"] == {"database": "ok"}


def test_the_face_is_served_under_its_prefix_and_on_its_own_port(served: Served) -> None:
    assert served.face_url is not None
    main = httpx.Client(base_url=f"{served.url}/wrenn")
    face = httpx.Client(base_url=served.face_url)
    # Sign up on the face port, log in on the main port: one platform behind both.
    account = Wrenn(face).signup(name="Two Ports")
    login = Wrenn(main).login(account.email, account.password)
    assert login.status_code == 200
    assert login.json()["user_id"] == account.user_id
    for client in (main, face):
        resp = client.get("/v1/teams", headers=account.headers)
        assert resp.status_code == 200
        assert resp.json()[0]["id"] == account.team_id
    # Absolute Wrenn paths live at the root of the face port only.
    assert httpx.get(f"{served.url}/v1/teams", headers=account.headers).status_code == 404
    assert face.get("/wrenn/v1/teams", headers=account.headers).status_code == 404
    # Unknown paths inside the face answer in Wrenn's error shape.
    missing = main.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "not_found"


def test_correlation_ids_are_echoed_or_minted(served: Served) -> None:
    assert served.face_url is not None
    urls = [
        f"{served.url}/healthz",
        f"{served.url}/wrenn/v1/teams",
        f"{served.face_url}/v1/teams",
        f"{served.url}/no-such-path",
    ]
    for url in urls:
        given = httpx.get(url, headers={"X-Correlation-Id": "req-42.a:b_c"})
        assert given.headers["x-correlation-id"] == "req-42.a:b_c", url
        assert given.headers.get_list("x-correlation-id") == ["req-42.a:b_c"]
        minted = httpx.get(url)
        assert re.fullmatch(r"[0-9a-f]{32}", minted.headers["x-correlation-id"]), url
        assert minted.headers["x-correlation-id"] != httpx.get(url).headers["x-correlation-id"]
        # A value that could smuggle anything into logs is replaced, not echoed.
        bad = httpx.get(url, headers={"X-Correlation-Id": "x" * 200})
        assert re.fullmatch(r"[0-9a-f]{32}", bad.headers["x-correlation-id"])
    error = httpx.post(
        f"{served.url}/wrenn/v1/auth/login", json={}, headers={"X-Correlation-Id": "err-1"}
    )
    assert error.status_code == 400
    assert error.headers["x-correlation-id"] == "err-1"


def test_the_face_publishes_its_openapi_document(served: Served) -> None:
    assert served.face_url is not None
    for url in (f"{served.url}/wrenn/openapi.json", f"{served.face_url}/openapi.json"):
        resp = httpx.get(url)
        assert resp.status_code == 200
        doc = resp.json()
        assert doc["openapi"].startswith("3.")
        for path in (
            "/v1/auth/signup",
            "/v1/auth/login",
            "/v1/auth/switch-team",
            "/v1/api-keys",
            "/v1/api-keys/{id}",
            "/v1/users/search",
            "/v1/teams",
            "/v1/teams/{id}",
            "/v1/teams/{id}/members",
            "/v1/teams/{id}/members/{uid}",
            "/v1/teams/{id}/leave",
            "/v1/auth/oauth/{provider}",
            "/v1/auth/oauth/{provider}/callback",
        ):
            assert path in doc["paths"], path
    mounted = httpx.get(f"{served.url}/wrenn/openapi.json").json()
    assert {"url": "/wrenn"} in mounted.get("servers", [])


def test_oauth_through_env_configuration_on_both_ports(
    served: Served, fake_github: FakeGitHub
) -> None:
    assert served.face_url is not None
    for base in (f"{served.url}/wrenn", served.face_url):
        with httpx.Client(base_url=base, follow_redirects=False) as browser:
            start = browser.get("/v1/auth/oauth/github")
            assert start.status_code == 302
            query = parse_qs(urlsplit(start.headers["location"]).query)
            # The callback GitHub is told about is this port's own, with or without the prefix.
            assert query["redirect_uri"] == [f"{base}/v1/auth/oauth/github/callback"]
            user = GitHubUser(
                id=abs(hash(base)) % 10**9, login="env", name="Env Cat", email=unique_email("env")
            )
            fake_github.queue_consent(user)
            back = httpx.get(start.headers["location"], follow_redirects=False).headers["location"]
            done = browser.get(back)
            assert done.status_code == 302
            target = urlsplit(done.headers["location"])
            assert (
                f"{target.scheme}://{target.netloc}{target.path}"
                == f"{FRONTEND}/auth/github/callback"
            )
            assert "token" in parse_qs(target.query)


def test_logs_are_json_lines_without_secrets(served: Served, fake_github: FakeGitHub) -> None:
    main = httpx.Client(base_url=f"{served.url}/wrenn")
    password = "hunter2-" + os.urandom(6).hex()
    account = Wrenn(main).signup(password=password, name="Logged")
    key = Wrenn(main).create_key(account)["key"]
    secret_query = "code=SECRETCODE123&state=SECRETSTATE456"
    main.get(
        f"/v1/auth/oauth/github/callback?{secret_query}", headers={"X-Correlation-Id": "logcheck-1"}
    )
    main.get("/v1/users/search?email=findme-SECRET%40", headers=account.headers)

    def logged() -> str:
        return served.stderr.read_text()

    # The access line is written after the response; give it a moment.
    for _ in range(50):
        if "logcheck-1" in logged():
            break
        time.sleep(0.05)
    lines = served.log_lines()
    structured = [line for line in lines if line.startswith("{")]
    # Everything but the one human banner line is a JSON object with an event and a level.
    others = [line for line in lines if not line.startswith("{") and line.strip()]
    assert len(others) <= 1, others
    assert all(line.startswith("Hangar ") for line in others), others
    records = [json.loads(line) for line in structured]
    assert all("event" in r and "level" in r and "timestamp" in r for r in records)
    access = [r for r in records if r["event"] == "request"]
    callback = [r for r in access if r.get("correlation_id") == "logcheck-1"]
    assert callback == [callback[0]]
    assert callback[0]["path"] == "/wrenn/v1/auth/oauth/github/callback"
    assert callback[0]["status"] == 302
    assert callback[0]["method"] == "GET"
    text = "\n".join(lines)
    for secret in (
        "SECRETCODE123",
        "SECRETSTATE456",
        "findme-SECRET",
        password,
        key,
        account.token,
        CLIENT_SECRET,
    ):
        assert secret not in text
    assert all("?" not in str(r["path"]) for r in access)
