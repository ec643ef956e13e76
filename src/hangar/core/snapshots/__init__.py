"""Snapshots: a capsule's filesystem saved under a name its team can start capsules from."""
