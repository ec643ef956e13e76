"""The core's runtime objects, made once per process and shared by every face."""

from __future__ import annotations

import httpx

from hangar.core.auth.oauth import GitHubProvider, OAuthStates
from hangar.core.auth.tokens import UserTokens
from hangar.core.channels.registry import providers as channel_providers
from hangar.core.config import CoreSettings
from hangar.core.db import Database
from hangar.core.db.migrate import upgrade
from hangar.core.events.bus import EventBus
from hangar.core.fleet.gateway import Fleet
from hangar.core.security.jwt import TokenSigner, load_or_create_keys
from hangar.core.security.passwords import PasswordHasher
from hangar.core.security.sealing import Sealer, load_or_create_sealing_keys


class Platform:
    """Settings, database, key material and shared clients."""

    def __init__(self, settings: CoreSettings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.resolved_database_url(), echo=settings.database_echo)
        self.hasher = PasswordHasher()
        keys = load_or_create_keys(
            [k.get_secret_value() for k in settings.jwt_signing_keys], settings.data_dir
        )
        self.signer = TokenSigner(keys, settings.jwt_issuer)
        self.user_tokens = UserTokens(self.signer, settings.user_token_ttl_seconds)
        self.oauth_states = OAuthStates(self.signer)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(15.0), follow_redirects=False)
        self.fleet = Fleet(settings.hosts)
        self.bus = EventBus()
        self.sealer = Sealer(
            load_or_create_sealing_keys(
                [k.get_secret_value() for k in settings.sealing_keys], settings.data_dir
            )
        )
        self.channel_providers = channel_providers(settings.channels)
        self.oauth_providers: dict[str, GitHubProvider] = {}
        if settings.oauth_github is not None:
            self.oauth_providers["github"] = GitHubProvider(settings.oauth_github, self.http)

    async def start(self, *, migrate: bool = True) -> None:
        """Bring the database schema up to date."""
        if migrate:
            await upgrade(self.db)

    async def stop(self) -> None:
        """Release connections."""
        await self.fleet.aclose()
        await self.http.aclose()
        await self.db.dispose()
