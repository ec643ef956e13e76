"""Authenticators as plugins behind one interface; each face declares its chain."""

from hangar.web.authn.base import AuthChain, AuthContext, Authenticator
from hangar.web.authn.chains import authenticate, build_chain, face_chain

__all__ = [
    "AuthChain",
    "AuthContext",
    "Authenticator",
    "authenticate",
    "build_chain",
    "face_chain",
]
