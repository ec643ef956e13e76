"""The in-sandbox supervisor: stdlib only, run by the template's own Python (>= 3.9)."""
