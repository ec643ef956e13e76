"""Limits the control plane and the agent both enforce, defined once.

The control plane refuses a policy over them when it is given (so a queued VM's policy can
never be refused by its host later), and the agent refuses one from any caller.
"""

from __future__ import annotations

FIREWALL_MAX_RULES = 64  # ingress rules per policy
FIREWALL_MAX_SOURCES = 32  # source prefixes per rule
FIREWALL_MAX_CIDR_CHARS = 64  # characters of one source prefix
