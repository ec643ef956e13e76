"""Signing in: passwords, user tokens scoped to a team, and OAuth providers."""
