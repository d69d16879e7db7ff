"""Pure core of the agent: events in, commands out.

Nothing in this package opens a port, starts a thread, sleeps or reads a
clock: the caller passes the time in. It imports nothing else from ``agent``
(a test checks that importing it pulls in no serial, GPIO or MQTT library).
"""
