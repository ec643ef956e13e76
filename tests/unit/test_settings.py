"""Settings come from HANGAR_* environment variables, nested with `__`."""

from __future__ import annotations

from pathlib import Path

import pytest

from hangar.core.config import default_data_dir
from hangar.core.errors import Forbidden
from hangar.core.identity.principal import CredentialKind, Principal
from hangar.server.settings import Settings


@pytest.fixture(autouse=True)
def no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("HANGAR_"):
            monkeypatch.delenv(name)


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    settings = Settings()
    assert settings.data_dir == tmp_path / "hangar" == default_data_dir()
    assert (
        settings.resolved_database_url()
        == f"sqlite+aiosqlite:///{tmp_path / 'hangar' / 'hangar.db'}"
    )
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.oauth_github is None
    assert settings.user_token_ttl_seconds == 6 * 3600
    assert settings.wrenn.api_key_prefix == "wrn_"
    assert settings.face_ports == {}


def test_default_data_dir_without_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_data_dir() == Path.home() / ".local" / "share" / "hangar"


def test_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "HANGAR_DATA_DIR": str(tmp_path),
        "HANGAR_DATABASE_URL": "postgresql+psycopg://u@db:5432/hangar",
        "HANGAR_PORT": "9000",
        "HANGAR_HOST": "0.0.0.0",  # noqa: S104
        "HANGAR_FACE_PORTS": '{"wrenn": 9001}',
        "HANGAR_OAUTH_GITHUB__CLIENT_ID": "cid",
        "HANGAR_OAUTH_GITHUB__CLIENT_SECRET": "csecret",
        "HANGAR_WRENN__OAUTH_REDIRECT_URL": "https://app.example.com",
        "HANGAR_JWT_SIGNING_KEYS": '["{}"]',
        "HANGAR_PUBLIC_URL": "https://api.example.com",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = Settings()
    assert settings.data_dir == tmp_path
    assert settings.resolved_database_url() == "postgresql+psycopg://u@db:5432/hangar"
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)  # noqa: S104
    assert settings.face_ports == {"wrenn": 9001}
    assert settings.oauth_github is not None
    assert settings.oauth_github.client_id == "cid"
    assert settings.oauth_github.client_secret.get_secret_value() == "csecret"
    assert "csecret" not in repr(settings)
    assert settings.oauth_github.authorize_url == "https://github.com/login/oauth/authorize"
    assert settings.wrenn.oauth_redirect_url == "https://app.example.com"
    assert settings.public_url == "https://api.example.com"
    assert [k.get_secret_value() for k in settings.jwt_signing_keys] == ["{}"]


def test_log_format_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANGAR_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        Settings()


def test_principals_of_api_keys_are_not_users() -> None:
    key = Principal(kind=CredentialKind.API_KEY, team_id="t", user_id="u", api_key_id="k")
    with pytest.raises(Forbidden):
        key.require_user()
    user = Principal(kind=CredentialKind.USER_TOKEN, team_id="t", user_id="u")
    assert user.require_user() == "u"
