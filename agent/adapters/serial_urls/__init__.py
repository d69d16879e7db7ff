"""Extra pyserial URL schemes for the GNSS port.

pyserial opens ``serial_for_url(url)`` by looking for a module
``protocol_<scheme>`` in each package listed in
``serial.protocol_handler_packages``. :func:`register` adds this package, so
``[gnss] port`` may also be:

- ``gpsd://host:port[/device]``: the receiver's raw NMEA relayed by gpsd
  (``protocol_gpsd``), for units where gpsd owns the receiver and feeds
  chrony (``firmware-config/chrony/umps-gnss-gpsd.conf``).

The composition root calls :func:`register` once before opening the port.
"""

from __future__ import annotations

import serial

PACKAGE = __name__


def register() -> None:
    """Make pyserial find this package's URL schemes (idempotent)."""
    if PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(PACKAGE)
