"""Compute: what a machine is made of (resources, GPUs, source, network), for every face."""
