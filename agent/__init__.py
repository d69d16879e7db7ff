"""umps-agent: the on-board agent of a police emergency patrol unit (UMPS).

The package is laid out so the architecture shows in the tree:

- ``agent.core``: pure logic. Events in, commands out. No threads, sockets,
  clocks or hardware; it imports nothing else from ``agent``.
- ``agent.adapters``: one module per outside thing (serial GNSS, GPIO, MQTT,
  the durable outbox, the touchscreen web UI, the rider panel display,
  systemd notification). Each turns library callbacks into core events.
- ``agent.config``: the TOML configuration schema, validated once into frozen dataclasses
  (by ``agent.config_validate``; remote pushes on the remote-request worker thread).
- ``agent.runtime``: the composition root: the core thread and its effect
  dispatcher, wired to ``agent.parts`` (what the agent is made of: the stores, the
  unit, the adapters, one bounded inbox). ``agent.lifecycle`` is the one table of
  adapters (start order and why, stops, rebuilds). Beside them,
  ``agent.outputs`` refreshes the crew's outputs from views,
  ``agent.remote_results`` carries out the remote-request worker's results on
  the core thread, ``agent.watchdog_rules`` says what the systemd watchdog asks, and
  ``agent.status_report`` writes what ``umps-agent status`` shows.
- ``agent.cli``: the ``umps-agent`` command.
"""

__version__ = "0.1.0"
