"""Error codes of the supervisor protocol, shared by the supervisor and the agent's client.

Stdlib only, Python >= 3.9: this module runs inside sandboxes too.
"""

from __future__ import annotations

NOT_FOUND = "not_found"
NOT_DIR = "not_dir"
IS_DIR = "is_dir"
NOT_FILE = "not_file"
PERMISSION = "permission"
EXISTS = "exists"
NOT_EMPTY = "not_empty"
TOO_LARGE = "too_large"
ABORTED = "aborted"
BAD_REQUEST = "bad_request"
ERROR = "error"

# A file operation refused for what is (or is not) at the path: the client's PathError.
PATH_ERRORS = frozenset({NOT_DIR, IS_DIR, NOT_FILE, PERMISSION, EXISTS, NOT_EMPTY, ERROR})
