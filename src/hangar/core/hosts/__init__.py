"""Hosts: machines that run capsules, their registration, credentials and liveness."""
