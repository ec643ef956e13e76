"""Tests of the sandbox runtimes, the supervisor and the template store."""
