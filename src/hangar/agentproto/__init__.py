"""The versioned protocol between the control plane and host agents: models and a client.

Both sides import this package; neither imports the other. Bump `VERSION` on any breaking
change to a path, a field's meaning or a message's shape.
"""

VERSION = "1"
