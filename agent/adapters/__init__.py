"""Adapters: one module per outside thing (serial GNSS, GPIO, MQTT, outbox,
web UI, displays, systemd). Each turns a library's callbacks into core events
and never lets an exception escape into the library's thread.
"""
