"""Adapters: the one real implementation of each port, talking to a real service."""
