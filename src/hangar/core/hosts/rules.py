"""Validation and permission rules for hosts, free of any storage."""

from __future__ import annotations

import re

from hangar.core.errors import InvalidInput
from hangar.core.hosts.models import Host, HostType
from hangar.core.identity import rules as identity_rules
from hangar.core.identity.models import Role
from hangar.core.identity.principal import Principal

MAX_LABEL_LENGTH = 64
MAX_ADDRESS_LENGTH = 255
# Generous bounds: a host reports its own size, but absurd numbers would break the scheduler.
MAX_CPU_CORES = 1 << 16
MAX_MEMORY_MB = 1 << 31
MAX_DISK_GB = 1 << 31
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:=-]{0,63}$")
REGION = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def host_type(value: str) -> HostType:
    """A known host type."""
    try:
        return HostType(value)
    except ValueError:
        raise InvalidInput("type must be regular or byoc") from None


def label(name: str, value: str | None, limit: int = MAX_LABEL_LENGTH) -> str | None:
    """An optional short text field: trimmed, bounded, storable; empty means unset."""
    if value is None:
        return None
    value = value.strip()
    if len(value) > limit or not identity_rules.storable(value):
        raise InvalidInput(f"{name} must be at most {limit} characters of text")
    return value or None


def count(name: str, value: int | None, limit: int) -> int | None:
    """An optional non-negative size a host reports."""
    if value is not None and not 0 <= value <= limit:
        raise InvalidInput(f"{name} must be between 0 and {limit}")
    return value


def address(value: str) -> str:
    """The agent's address (`ip:port` or a name): required, bounded, no spaces."""
    value = value.strip()
    if not value or len(value) > MAX_ADDRESS_LENGTH or any(c.isspace() for c in value):
        raise InvalidInput("address must be a host:port without spaces")
    if not identity_rules.storable(value):
        raise InvalidInput("address must be text")
    return value


def tag(value: str) -> str:
    """A tag: 1-64 characters of letters, digits and `._:=-`, starting with one of the first."""
    if not TAG.fullmatch(value):
        raise InvalidInput("tag must be 1-64 characters of letters, digits and ._:=-")
    return value


def region(value: str) -> str:
    """A region label: 1-64 lower-case letters, digits and `._-` (`local`, `us-buffalo-1`)."""
    if not REGION.fullmatch(value):
        raise InvalidInput("region must be 1-64 lower-case letters, digits and ._-")
    return value


def visible(principal: Principal, host: Host) -> bool:
    """Platform admins see every host; others only their token's team's BYOC hosts."""
    if principal.is_platform_admin:
        return True
    return host.type == HostType.BYOC and host.team_id == principal.team_id


def may_create(principal: Principal, kind: HostType, role: Role | None) -> bool:
    """Regular hosts: platform admins. BYOC: platform admins or that team's owner."""
    if principal.is_platform_admin:
        return True
    return kind == HostType.BYOC and role is Role.OWNER


def may_delete(principal: Principal, host: Host, role: Role | None) -> bool:
    """Platform admins any host; a team's owners and admins its BYOC hosts."""
    if principal.is_platform_admin:
        return True
    return host.type == HostType.BYOC and role is not None and role.can_manage
