"""The face framework: how a face is built, mounted and observed. Knows no business rule."""
