"""Adapters: one module per outside thing; each turns library callbacks into core events."""
