"""The rig's slowdown factor (hil.slowdown): deadlines stretch under emulation, never shrink."""
from __future__ import annotations

from pathlib import Path

import pytest

from hil.engine import ONLINE_TIMEOUT_S, RigOptions
from hil.slowdown import SLOWDOWN_ENV, slowdown


def test_unset_or_empty_is_one():
    assert slowdown({}) == 1.0
    assert slowdown({SLOWDOWN_ENV: "  "}) == 1.0


def test_a_factor_is_read():
    assert slowdown({SLOWDOWN_ENV: "8"}) == 8.0
    assert slowdown({SLOWDOWN_ENV: " 2.5 "}) == 2.5


@pytest.mark.parametrize("text", ["fast", "0.5", "0", "-3", "nan", "inf"])
def test_a_bad_factor_is_refused_with_its_name(text: str):
    with pytest.raises(ValueError, match=SLOWDOWN_ENV):
        slowdown({SLOWDOWN_ENV: text})


def test_the_rigs_online_deadline_scales(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv(SLOWDOWN_ENV, raising=False)
    assert RigOptions(workdir=tmp_path).online_timeout_s == ONLINE_TIMEOUT_S
    monkeypatch.setenv(SLOWDOWN_ENV, "8")
    assert RigOptions(workdir=tmp_path).online_timeout_s == ONLINE_TIMEOUT_S * 8
    # A caller's own deadline stands as given.
    assert RigOptions(workdir=tmp_path, online_timeout_s=30.0).online_timeout_s == 30.0
