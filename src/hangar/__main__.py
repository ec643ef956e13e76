"""Allow `python -m hangar`."""

from hangar.cli import main

main()
