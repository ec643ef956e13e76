"""Notification channels: where a team's events are sent, and the log of every delivery."""
