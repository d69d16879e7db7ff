"""The black-holing TCP proxy of the MQTT link tests: the rig's (``hil.netproxy``)."""

from hil.netproxy import NetProxy

__all__ = ["NetProxy"]
