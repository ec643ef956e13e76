"""FastVM routes, one module per area of the spec."""
