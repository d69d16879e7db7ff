"""Pure core of the agent: events in, effects out.

Nothing in this package opens a port, starts a thread, sleeps or reads a
clock: the caller passes the time in. From the rest of ``agent`` it imports
only the validated config dataclasses (``agent.config``); a test checks that
importing it pulls in no serial, GPIO or MQTT library.
"""
