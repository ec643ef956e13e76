"""Registry of every feature's models, so Alembic and tests see the whole schema."""

from __future__ import annotations


def import_all_models() -> None:
    """Import each feature's models module (their import registers the tables)."""
    import hangar.core.allocations.models
    import hangar.core.apikeys.models
    import hangar.core.billing.models
    import hangar.core.capsules.models
    import hangar.core.channels.models
    import hangar.core.events.models
    import hangar.core.gpushare.models
    import hangar.core.grants.models
    import hangar.core.hosts.models
    import hangar.core.idempotency.models
    import hangar.core.identity.models
    import hangar.core.quotas.models
    import hangar.core.reservations.models
    import hangar.core.terminals.models  # noqa: F401
