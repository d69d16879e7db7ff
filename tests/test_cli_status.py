"""`umps-agent status` as a person at the unit reads it: the power line."""

from agent.cli import format_status


def test_status_shows_the_ignition_and_the_parked_state():
    parked = format_status({"unit": "KEN-C-01", "ignition": "off", "parked": True}, age=1.0)
    assert "ignition off  PARKED" in parked
    assert "ignition on" in format_status({"unit": "KEN-C-01", "ignition": "on", "parked": False}, age=1.0)
    assert "no ignition line" in format_status({"unit": "KEN-C-01", "ignition": None}, age=1.0)
