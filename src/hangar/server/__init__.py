"""The composition root: wires settings, the platform and every face into servers."""
