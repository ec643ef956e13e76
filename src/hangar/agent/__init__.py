"""The host agent: owns what runs on one host and drives its runtimes."""
