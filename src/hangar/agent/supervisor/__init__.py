"""The in-sandbox supervisor (a stdlib-only script) and the agent's client for it."""

from pathlib import Path

SCRIPT = Path(__file__).with_name("supervisor.py")

__all__ = ["SCRIPT"]
