"""The five wire-compatible APIs. Each face parses, calls the core, renders; no business rule."""
