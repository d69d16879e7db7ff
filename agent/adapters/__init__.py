"""Adapters: one module per outside thing (serial GNSS, GPIO, MQTT, storage...).

Each turns library callbacks into core events and returns at once; none lets
an exception escape into a library's thread.
"""
