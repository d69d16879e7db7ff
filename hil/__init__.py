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

Later parts (broker and peers, declarative scenarios, reports, bench and
fleet modes, the ``umps-hil`` command) build on these. The rig imports the
agent's package where it needs its contracts; the agent never imports the rig.
"""
