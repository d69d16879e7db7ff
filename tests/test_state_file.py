"""The unit's state file adapter (agent.adapters.state_file)."""

import json
import logging

import pytest

from agent.adapters.state_file import STATE_FILE, UnitStateFile


def test_a_stored_state_reads_back_and_is_not_rewritten_until_it_changes(tmp_path):
    f = UnitStateFile(tmp_path)
    state = {"status": "on_scene", "calls": [{"id": "C-1", "nature": "Accident"}]}
    assert f.changed(state)
    f.store(state)
    assert json.loads((tmp_path / STATE_FILE).read_text("utf-8")) == state
    assert not f.changed(dict(state))
    assert f.changed({**state, "status": "available"})
    assert UnitStateFile(tmp_path).load() == state


def test_arabic_text_is_stored_as_text(tmp_path):
    f = UnitStateFile(tmp_path)
    f.store({"nature": "حادث سير"})
    assert "حادث سير" in (tmp_path / STATE_FILE).read_text("utf-8")


def test_no_file_means_no_state(tmp_path):
    assert UnitStateFile(tmp_path).load() is None


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_an_unreadable_file_is_reported_and_ignored(tmp_path, body, caplog):
    (tmp_path / STATE_FILE).write_bytes(body)
    with caplog.at_level(logging.ERROR, logger="agent.state_file"):
        assert UnitStateFile(tmp_path).load() is None
    assert "unreadable" in caplog.text
    # Set aside for analysis, never deleted; the next write starts a new file.
    assert (tmp_path / (STATE_FILE + ".bad")).read_bytes() == body and not (tmp_path / STATE_FILE).exists()


def test_a_second_damaged_file_never_overwrites_the_first_one_set_aside(tmp_path):
    for body in (b"{first", b"{second"):
        (tmp_path / STATE_FILE).write_bytes(body)
        assert UnitStateFile(tmp_path).load() is None
    assert (tmp_path / (STATE_FILE + ".bad")).read_bytes() == b"{first"
    assert (tmp_path / (STATE_FILE + ".bad.1")).read_bytes() == b"{second"


def test_on_a_full_card_the_reserve_keeps_the_state_for_the_next_start(tmp_path):
    """An alarm raised on a full card survives a restart: the reserve, made at start, takes it in place."""
    from tests.support.disk import fill, small_tmpfs

    with small_tmpfs(tmp_path / "card", "512k") as card:
        f = UnitStateFile(card)
        assert f.prepare()
        f.store({"status": "en_route"})
        filler = fill(card)
        alarm = {"status": "en_route", "emergency": {"state": "active", "alarm_id": 3}}
        with pytest.raises(OSError):
            f.store(alarm)
        assert f.changed(alarm)  # the file is still to be written: retried at the next change or tick
        assert UnitStateFile(card).load() == alarm  # what a restart on the full card finds

        filler.unlink()
        f.store(alarm)  # the file takes it again: the reserve is superseded
        cleared = {"status": "available", "emergency": {"state": "cleared", "alarm_id": 3}}
        f.store(cleared)
        assert UnitStateFile(card).load() == cleared


def test_a_failed_write_leaves_the_state_unstored(tmp_path):
    f = UnitStateFile(tmp_path / "gone")  # its directory does not exist: the write fails
    with pytest.raises(OSError):
        f.store({"status": "en_route"})
    assert f.changed({"status": "en_route"})
