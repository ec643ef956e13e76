"""The fleet: which host agents exist and how to reach them."""
