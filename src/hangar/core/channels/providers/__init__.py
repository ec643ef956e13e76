"""Channel providers: one module per destination, each speaking that destination's format."""
