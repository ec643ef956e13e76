"""The face registry: every face Hangar serves. A new face is one line here."""

from __future__ import annotations

from hangar.faces import fastvm, wrenn
from hangar.web.registry import FaceSpec

FACES: tuple[FaceSpec, ...] = (
    wrenn.FACE,
    fastvm.FACE,
)
