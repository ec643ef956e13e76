"""The `jail` runtime: bubblewrap namespaces, an overlay root, cgroups and a supervisor."""

from hangar.agent.runtimes.jail.cgroups import Cgroups, CgroupV1, CgroupV2, Limits, detect
from hangar.agent.runtimes.jail.runtime import JailRuntime

__all__ = ["CgroupV1", "CgroupV2", "Cgroups", "JailRuntime", "Limits", "detect"]
