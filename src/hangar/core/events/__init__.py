"""Events: a transactional outbox, a relay, and the sinks it feeds (in-process bus, NATS)."""
