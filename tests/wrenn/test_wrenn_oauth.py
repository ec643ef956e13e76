"""Wrenn `/v1/auth/oauth/github`: the whole browser flow against a local fake GitHub."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from support.fake_github import CLIENT_ID, FakeGitHub, GitHubUser
from support.live import FRONTEND_URL, LiveServer
from support.wrenn import Account, bearer, claims_of, error_of, unique_email

_ids = itertools.count(int.from_bytes(os.urandom(3), "big") * 1000)


def github_user(email: str | None = None, **kwargs: object) -> GitHubUser:
    n = next(_ids)
    return GitHubUser(
        id=n,
        login=f"octo{n}",
        name=kwargs.pop("name", "Octo Cat"),  # type: ignore[arg-type]
        email=unique_email("gh") if email is None else email,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def browser(server: LiveServer) -> Iterator[httpx.Client]:
    """A cookie-keeping client that does not follow redirects, like a browser we step through."""
    with httpx.Client(base_url=server.wrenn_url, timeout=30.0, follow_redirects=False) as client:
        yield client


@pytest.fixture
def github(fake_github: FakeGitHub) -> Iterator[FakeGitHub]:
    yield fake_github
    fake_github.token_status = 200
    fake_github.user_status = 200


def start(browser: httpx.Client) -> tuple[str, dict[str, list[str]]]:
    """Step 1: Hangar sends us to GitHub. Returns the authorize URL and its query."""
    resp = browser.get("/v1/auth/oauth/github")
    assert resp.status_code == 302, resp.text
    location = resp.headers["location"]
    return location, parse_qs(urlsplit(location).query)


def consent(browser: httpx.Client, authorize_url: str) -> str:
    """Step 2: GitHub sends us back to Hangar's callback (with a code, or an error)."""
    resp = httpx.get(authorize_url, follow_redirects=False)
    assert resp.status_code == 302, resp.text
    return resp.headers["location"]


def finish(browser: httpx.Client, callback_url: str) -> dict[str, str]:
    """Step 3: Hangar's callback sends us to the frontend; returns the frontend's query."""
    resp = browser.get(callback_url)
    assert resp.status_code == 302, resp.text
    target = urlsplit(resp.headers["location"])
    assert (
        f"{target.scheme}://{target.netloc}{target.path}" == f"{FRONTEND_URL}/auth/github/callback"
    )
    # The state cookie is single-use: the callback always clears it.
    assert "oauth_state=" in resp.headers["set-cookie"]
    assert (
        "Max-Age=0" in resp.headers["set-cookie"]
        or "expires=" in resp.headers["set-cookie"].lower()
    )
    return {k: v[0] for k, v in parse_qs(target.query).items()}


def sign_in(browser: httpx.Client, github: FakeGitHub, user: GitHubUser | str) -> dict[str, str]:
    authorize_url, _ = start(browser)
    github.queue_consent(user)
    return finish(browser, consent(browser, authorize_url))


def test_redirect_to_github_sets_a_state_cookie(
    server: LiveServer, browser: httpx.Client, github: FakeGitHub
) -> None:
    resp = browser.get("/v1/auth/oauth/github")
    assert resp.status_code == 302
    location = urlsplit(resp.headers["location"])
    assert (
        f"{location.scheme}://{location.netloc}{location.path}"
        == f"{github.url}/login/oauth/authorize"
    )
    query = parse_qs(location.query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == [f"{server.wrenn_url}/v1/auth/oauth/github/callback"]
    assert query["scope"] == ["read:user user:email"]
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith("oauth_state=")
    assert "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()
    assert "Path=/" in cookie
    assert "Max-Age=600" in cookie
    # The cookie is a signed, short-lived token vouching for exactly this state.
    state = query["state"][0]
    assert len(state) >= 32
    token = cookie.split(";")[0].removeprefix("oauth_state=")
    claims = claims_of(token)
    assert claims["sub"] == state
    assert claims["aud"] == "hangar:oauth-state"
    assert claims["provider"] == "github"
    assert claims["exp"] - claims["iat"] == 600


def test_first_sign_in_creates_the_user_and_a_personal_team(
    browser: httpx.Client, github: FakeGitHub, http: httpx.Client
) -> None:
    user = github_user(name="Mona Lisa")
    result = sign_in(browser, github, user)
    assert "error" not in result, result
    assert set(result) == {"token", "user_id", "team_id", "email", "name"}
    assert result["email"] == user.email
    assert result["name"] == "Mona Lisa"
    teams = http.get("/v1/teams", headers=bearer(result["token"])).json()
    assert [(t["id"], t["role"], t["name"]) for t in teams] == [
        (result["team_id"], "owner", "Mona Lisa Team")
    ]
    # Hangar exchanged the code with its client secret and the same redirect_uri.
    exchange = github.recorded("/login/oauth/access_token")[-1]
    assert exchange.form["client_secret"] == ["hangar-test-secret"]
    assert exchange.method == "POST"


def test_second_sign_in_finds_the_same_account(browser: httpx.Client, github: FakeGitHub) -> None:
    user = github_user()
    first = sign_in(browser, github, user)
    user.email = unique_email("renamed")  # GitHub email changes; the account is linked by id
    second = sign_in(browser, github, user)
    assert second["user_id"] == first["user_id"]
    assert second["team_id"] == first["team_id"]
    assert second["email"] == first["email"]


def test_a_private_email_is_read_from_user_emails(
    browser: httpx.Client, github: FakeGitHub
) -> None:
    primary = unique_email("private")
    user = github_user(
        email="",
        name=None,
        emails=[
            {"email": unique_email("other"), "primary": False, "verified": True},
            {"email": primary, "primary": True, "verified": True},
        ],
    )
    user.email = None
    result = sign_in(browser, github, user)
    assert result["email"] == primary
    assert result["name"] == user.login  # no display name: the login stands in


def test_an_unverified_primary_email_fails_the_exchange(
    browser: httpx.Client, github: FakeGitHub
) -> None:
    user = github_user(emails=[{"email": unique_email(), "primary": True, "verified": False}])
    user.email = None
    assert sign_in(browser, github, user) == {"error": "exchange_failed"}


def test_provider_error_is_access_denied(browser: httpx.Client, github: FakeGitHub) -> None:
    assert sign_in(browser, github, "access_denied") == {"error": "access_denied"}


def test_state_mismatch_is_invalid_state(browser: httpx.Client, github: FakeGitHub) -> None:
    authorize_url, _ = start(browser)
    github.queue_consent(github_user())
    callback = urlsplit(consent(browser, authorize_url))
    code = parse_qs(callback.query)["code"][0]
    base = f"{callback.scheme}://{callback.netloc}{callback.path}"
    assert finish(browser, f"{base}?code={code}&state=forged") == {"error": "invalid_state"}


def test_a_callback_without_the_cookie_is_invalid_state(
    server: LiveServer, browser: httpx.Client, github: FakeGitHub
) -> None:
    authorize_url, _ = start(browser)
    github.queue_consent(github_user())
    callback = consent(browser, authorize_url)
    with httpx.Client(follow_redirects=False) as other_browser:  # no oauth_state cookie
        assert finish(other_browser, callback) == {"error": "invalid_state"}


def test_a_state_cookie_is_single_use(browser: httpx.Client, github: FakeGitHub) -> None:
    authorize_url, _ = start(browser)
    github.queue_consent(github_user())
    callback = consent(browser, authorize_url)
    assert "token" in finish(browser, callback)
    assert finish(browser, callback) == {"error": "invalid_state"}


def test_missing_code_is_missing_code(browser: httpx.Client) -> None:
    _, query = start(browser)
    state = query["state"][0]
    assert finish(browser, f"/v1/auth/oauth/github/callback?state={state}") == {
        "error": "missing_code"
    }


def test_a_bad_code_is_exchange_failed(browser: httpx.Client) -> None:
    _, query = start(browser)
    state = query["state"][0]
    result = finish(browser, f"/v1/auth/oauth/github/callback?code=bogus&state={state}")
    assert result == {"error": "exchange_failed"}


@pytest.mark.parametrize("failing", ["token_status", "user_status"])
def test_github_failing_is_exchange_failed(
    browser: httpx.Client, github: FakeGitHub, failing: str
) -> None:
    setattr(github, failing, 502)
    assert sign_in(browser, github, github_user()) == {"error": "exchange_failed"}


def test_an_email_registered_with_a_password_is_email_taken(
    browser: httpx.Client, github: FakeGitHub, alice: Account, http: httpx.Client
) -> None:
    user = github_user(email=alice.email.upper())
    assert sign_in(browser, github, user) == {"error": "email_taken"}
    # Nothing was linked or created: the password account is untouched and still the only one.
    assert sign_in(browser, github, user) == {"error": "email_taken"}
    login = http.post("/v1/auth/login", json={"email": alice.email, "password": alice.password})
    assert login.status_code == 200
    assert login.json()["user_id"] == alice.user_id


def test_an_oauth_account_cannot_log_in_with_a_password(
    browser: httpx.Client, github: FakeGitHub, http: httpx.Client
) -> None:
    user = github_user()
    sign_in(browser, github, user)
    for password in ("", "anything at all"):
        resp = http.post("/v1/auth/login", json={"email": user.email, "password": password})
        assert resp.status_code == 401


@pytest.mark.parametrize("path", ["/v1/auth/oauth/gitlab", "/v1/auth/oauth/gitlab/callback"])
def test_an_unknown_provider_is_404(browser: httpx.Client, path: str) -> None:
    resp = browser.get(path)
    assert resp.status_code == 404
    assert error_of(resp)["code"] == "provider_not_found"
