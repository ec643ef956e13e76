"""Per-team resource quotas."""
