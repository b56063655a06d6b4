"""The pure core: parsing, validation, enrichment and record building over plain data.

Nothing in this package opens a socket, reads the environment or the clock on its own:
time and identifiers are passed in, so every function is deterministic under test.
"""
