"""Terminals: shared terminal sessions (Warpdrive) and the guests who join them on approval."""
