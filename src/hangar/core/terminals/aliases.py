"""Human-friendly session aliases: `amber-falcon-4821`, easy to read out and to type."""

from __future__ import annotations

import re
import secrets

ADJECTIVES = (
    "amber", "azure", "bold", "brave", "bright", "calm", "clever", "cosmic", "crisp", "dapper",
    "eager", "fancy", "gentle", "glad", "golden", "happy", "jolly", "keen", "lively", "lucky",
    "mellow", "merry", "nimble", "noble", "quick", "quiet", "rapid", "shiny", "silver", "sunny",
    "swift", "witty",
)  # fmt: skip
NOUNS = (
    "badger", "beacon", "comet", "condor", "falcon", "fox", "galaxy", "harbor", "heron", "lynx",
    "maple", "meteor", "nebula", "orbit", "otter", "panda", "pebble", "pine", "quasar", "raven",
    "river", "rocket", "sparrow", "spruce", "summit", "tiger", "tundra", "walrus", "willow",
    "wombat", "yak", "zephyr",
)  # fmt: skip
ALIAS = re.compile(r"^[a-z]+-[a-z]+-[0-9]{4}$")


def new_alias() -> str:
    """A random alias: about ten million of them, so a clash (retried) is rare."""
    adjective, noun = secrets.choice(ADJECTIVES), secrets.choice(NOUNS)
    return f"{adjective}-{noun}-{secrets.randbelow(10000):04d}"
