"""The core's runtime objects, made once per process and shared by every face."""

from __future__ import annotations

from hangar.core.apikeys.cache import PrincipalCache
from hangar.core.auth.oauth import GitHubProvider, OAuthStates
from hangar.core.auth.tokens import UserTokens
from hangar.core.channels.registry import providers as channel_providers
from hangar.core.config import CoreSettings
from hangar.core.datadir import secure_data_dir
from hangar.core.db import Database
from hangar.core.db.migrate import upgrade
from hangar.core.events.bus import EventBus
from hangar.core.fleet.gateway import Fleet
from hangar.core.metrics import Metrics
from hangar.core.security.jwt import TokenSigner, load_or_create_keys
from hangar.core.security.outbound import outbound_client
from hangar.core.security.passwords import PasswordHasher
from hangar.core.security.sealing import Sealer, load_or_create_sealing_keys


def trusted_endpoints(settings: CoreSettings) -> list[str]:
    """The operator-configured endpoints the core calls, exempt from the outbound guard."""
    found = [settings.channels.telegram_api_url]
    if settings.oauth_github is not None:
        found += [settings.oauth_github.token_url, settings.oauth_github.api_url]
    return found


class Platform:
    """Settings, database, key material and shared clients."""

    def __init__(self, settings: CoreSettings) -> None:
        self.settings = settings
        secure_data_dir(settings.data_dir)
        self.db = Database(settings.resolved_database_url(), echo=settings.database_echo)
        self.hasher = PasswordHasher()
        keys = load_or_create_keys(
            [k.get_secret_value() for k in settings.jwt_signing_keys], settings.data_dir
        )
        self.signer = TokenSigner(keys, settings.jwt_issuer)
        self.user_tokens = UserTokens(self.signer, settings.user_token_ttl_seconds)
        self.api_key_principals = PrincipalCache(settings.api_key_cache_seconds)
        self.oauth_states = OAuthStates(self.signer)
        # Every request made on behalf of users goes through the outbound guard.
        self.http = outbound_client(settings.outbound, trusted_endpoints(settings))
        self.metrics = Metrics()
        self.fleet = Fleet(settings.hosts)
        self.fleet.observer = self.metrics.observe_agent_call
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
