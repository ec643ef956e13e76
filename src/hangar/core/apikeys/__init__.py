"""Team API keys: long-lived secrets for programmatic access, stored only as hashes."""
