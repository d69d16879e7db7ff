"""The hardware-in-the-loop rig: a stand-in vehicle for the umps-agent.

Nobody can test a police unit by driving around Kénitra for every change, so
the rig feeds the agent's real inputs and watches its real outputs while the
agent runs as a separate, unmodified process with its normal configuration:

- **GNSS emulator** (``hil.gnss_emulator``): a receiver that talks NMEA 0183
  (RMC, VTG, GGA, GSA, GSV, ZDA; ``GP`` or ``GN`` talker) at 1, 5 or 10 Hz on
  a pseudo-terminal behind a stable symlink, or on a TCP port for pyserial's
  ``socket://``. It drives along a route (``hil.route``, GPX or CSV; a patrol
  loop through Kénitra ships in ``hil/routes/``) under a simulated sky
  (``hil.sky``), or replays a real receiver capture. Faults on command or by
  schedule (``hil.gnss_faults``): fix lost in a tunnel, garbage bytes, bad
  checksums, truncated lines, time jumps, silence, unplug and replug.
  Sentences are built by the pure ``hil.nmea_gen``; ports live in
  ``hil.serial_ports``.
- **GPIO emulator** (``hil.gpio_emulator``): a pigpio daemon look-alike on
  loopback. The agent's gpiozero uses ``PiGPIOFactory(host, port)`` instead of
  its local pins; the rig presses, holds, bounces and releases its buttons,
  switches the siren line, and reads its LEDs and buzzer with a timestamped
  history.

- **Broker and peers** (``hil.broker``, ``hil.peers``): a Mosquitto of the
  rig's own on a free port, a tap recording the unit's topics, and the
  dispatcher and admin who talk to the unit.
- **Scenarios** (``hil.scenario``, ``hil.engine``, ``hil.expect``,
  ``hil.runlog``): TOML timelines of steps and expectations played against the
  agent process started from a generated config (``hil.agent_proc``), judged
  on the recorded log; ``hil.report`` writes the table, JSON, JUnit XML and an
  HTML report with plots.
- **Fleet mode** (``hil.fleet``): many simulated units on one broker.
- **Bench mode** (``hil.bench``): the same scenarios against a real unit.
- **Demo** (``hil.demo``, ``hil.demo_calls``, ``hil.panel_page``): the agent in the
  emulated vehicle with its screens and a prompt to play a shift, for whoever tries it.
- The ``umps-hil`` command (``hil.cli``); ``hil/README.md`` is the manual.

The rig imports the agent's package where it needs its contracts; the agent
never imports the rig.
"""
