"""Allocations: GPU (or CPU) capacity rented by the second (GPUaaS), and their lifecycle."""
