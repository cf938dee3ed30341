"""Placeholder: replaced by the simulator's fixtures."""
