"""A local HTTP server that plays GitHub's OAuth web flow and REST endpoints.

It implements just what Hangar's GitHub provider calls:

- `GET  /login/oauth/authorize`   consent: redirects back to `redirect_uri` with a code and the
  state, for the profile queued with `queue_consent` (or `?error=access_denied` when the queued
  consent is a refusal);
- `POST /login/oauth/access_token` code exchange, answering `{"access_token": ...}` or, like
  GitHub, 200 with `{"error": "bad_verification_code"}`;
- `GET  /user` and `GET /user/emails` for the bearer token.

Every request is recorded so tests can assert what Hangar sent.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlencode, urlsplit

CLIENT_ID = "hangar-test-client"
CLIENT_SECRET = "hangar-test-secret"


@dataclass
class GitHubUser:
    """A GitHub account. `email=None` hides it from `/user` so `/user/emails` is consulted."""

    id: int
    login: str
    name: str | None
    email: str | None
    emails: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    headers: dict[str, str]


class FakeGitHub:
    """The fake provider. Start it with `start()`, stop it with `stop()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._consents: deque[GitHubUser | str] = deque()
        self._codes: dict[str, tuple[GitHubUser, str]] = {}
        self._tokens: dict[str, GitHubUser] = {}
        self.requests: list[Recorded] = []
        # Failure switches for the next exchanges.
        self.token_status = 200
        self.user_status = 200
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeGitHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what tests drive ---------------------------------------------------------------------

    def queue_consent(self, user: GitHubUser | str) -> None:
        """The next visit to /authorize consents as `user` (or refuses with an error string)."""
        with self._lock:
            self._consents.append(user)

    def issue_code(self, user: GitHubUser, redirect_uri: str) -> str:
        """A valid authorization code for `user`, as if they had consented."""
        code = secrets.token_hex(10)
        with self._lock:
            self._codes[code] = (user, redirect_uri)
        return code

    def recorded(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # -- HTTP ---------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _record(self, form: dict[str, list[str]] | None = None) -> SplitResult:
                parts = urlsplit(self.path)
                with fake._lock:
                    fake.requests.append(
                        Recorded(
                            self.command,
                            parts.path,
                            parse_qs(parts.query),
                            form or {},
                            {k.lower(): v for k, v in self.headers.items()},
                        )
                    )
                return parts

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _user(self) -> GitHubUser | None:
                scheme, _, token = self.headers.get("Authorization", "").partition(" ")
                with fake._lock:
                    return fake._tokens.get(token) if scheme.lower() == "bearer" else None

            def do_GET(self) -> None:
                parts = self._record()
                if parts.path == "/login/oauth/authorize":
                    self._authorize(parse_qs(parts.query))
                elif parts.path == "/user":
                    user = self._user()
                    if user is None:
                        self._json(401, {"message": "Bad credentials"})
                    elif fake.user_status != 200:
                        self._json(fake.user_status, {"message": "Server Error"})
                    else:
                        self._json(
                            200,
                            {
                                "id": user.id,
                                "login": user.login,
                                "name": user.name,
                                "email": user.email,
                            },
                        )
                elif parts.path == "/user/emails":
                    user = self._user()
                    if user is None:
                        self._json(401, {"message": "Bad credentials"})
                    else:
                        self._json(200, user.emails)
                else:
                    self._json(404, {"message": "Not Found"})

            def _authorize(self, query: dict[str, list[str]]) -> None:
                redirect_uri = query.get("redirect_uri", [""])[0]
                state = query.get("state", [""])[0]
                if query.get("client_id", [""])[0] != CLIENT_ID or not redirect_uri:
                    self._json(400, {"message": "bad client or redirect_uri"})
                    return
                with fake._lock:
                    consent = fake._consents.popleft() if fake._consents else None
                if consent is None:
                    self._json(400, {"message": "no consent queued by the test"})
                    return
                if isinstance(consent, str):
                    back = {"error": consent, "state": state}
                else:
                    back = {"code": fake.issue_code(consent, redirect_uri), "state": state}
                self.send_response(302)
                self.send_header("Location", f"{redirect_uri}?{urlencode(back)}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                parts = self._record(form)
                if parts.path != "/login/oauth/access_token":
                    self._json(404, {"message": "Not Found"})
                    return
                if fake.token_status != 200:
                    self._json(fake.token_status, {"message": "Server Error"})
                    return
                code = form.get("code", [""])[0]
                with fake._lock:
                    issued = fake._codes.pop(code, None)
                ok_client = (
                    form.get("client_id", [""])[0] == CLIENT_ID
                    and form.get("client_secret", [""])[0] == CLIENT_SECRET
                )
                if issued is None or not ok_client:
                    # GitHub answers 200 with an error body for a bad code.
                    self._json(200, {"error": "bad_verification_code"})
                    return
                user, redirect_uri = issued
                if form.get("redirect_uri", [""])[0] != redirect_uri:
                    self._json(200, {"error": "redirect_uri_mismatch"})
                    return
                token = "gho_" + secrets.token_hex(16)
                with fake._lock:
                    fake._tokens[token] = user
                self._json(200, {"access_token": token, "token_type": "bearer", "scope": ""})

        return Handler
