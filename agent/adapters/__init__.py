"""Adapters: one module per outside thing, each turning its callbacks into core events."""
