"""The reservation ledger: what capsules and snapshots hold of team quotas and host room."""
