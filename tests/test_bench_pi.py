"""bench/pi.py, the figures a person takes on a real Raspberry Pi: what can be checked without one.

The GPIO loop runs against gpiozero's MockFactory with a connected pin standing in for the
jumper; the Markdown it prints is checked for the figures a person pastes; and on a
machine that is not a Pi the script refuses rather than print figures that are not a Pi's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gpiozero.pins.mock import MockConnectedPin, MockFactory

from bench import pi


def test_the_gpio_loop_times_each_edge_through_the_jumper():
    factory = MockFactory()
    factory.pin(20, pin_class=MockConnectedPin, input_pin=factory.pin(21))
    figures = pi.gpio_loop(20, 21, edges=50, factory=factory)
    assert figures["edges"] == 50 and figures["missed"] == 0
    assert 0 <= figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"] < 500


def test_a_missing_jumper_is_said_not_timed():
    factory = MockFactory()
    figures = pi.gpio_loop(20, 21, edges=5, factory=factory)
    assert figures == {"error": "GPIO21 does not follow GPIO20: is the jumper in place?"}


def test_the_markdown_carries_the_board_the_card_and_the_gpio():
    info = {"model": "Raspberry Pi 4 Model B Rev 1.5", "cpu": "Cortex-A72 x4"}
    gpio = {"edges": 400, "missed": 0, "p50_ms": 0.081, "p99_ms": 0.2, "max_ms": 1.5}
    text = pi.markdown(info, "   gnss  decode ...", 1800.0, written=90_000_000, gpio=gpio, card_tbw=40)
    assert text.startswith("## Measured on a Raspberry Pi (Raspberry Pi 4 Model B Rev 1.5, ")
    assert "| cpu | Cortex-A72 x4 |" in text
    assert "90.0 MB in 30 min, 180.0 MB per hour" in text
    assert "a card rated 40 TBW lasts 25 years" in text  # 40e12 / (180e6 * 8760)
    assert "400 edges, 0 missed: p50 0.081 ms, p99 0.200 ms, max 1.500 ms." in text
    missing = pi.markdown(info, "", 60.0, written=None, gpio=None, card_tbw=None)
    assert "not on an SD card here" in missing and "--gpio-loop OUT,IN" in missing


@pytest.mark.skipif(Path("/proc/device-tree/model").exists(), reason="this machine has a device tree")
def test_it_refuses_to_run_on_a_machine_that_is_not_a_pi(capsys):
    assert pi.main([]) == 2
    assert "run it on the unit" in capsys.readouterr().err
