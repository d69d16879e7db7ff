"""Logging for journald: <N> priority prefixes, detection from JOURNAL_STREAM."""

from __future__ import annotations

import io
import logging
import os
import warnings

import pytest

from agent import logsetup


@pytest.fixture(autouse=True)
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def test_journald_lines_carry_syslog_priorities():
    out = io.StringIO()
    logsetup.configure("debug", journald=True, stream=out)
    log = logging.getLogger("agent.adapters.serial_gnss")
    log.debug("raw line")
    log.info("port opened")
    log.warning("GNSS lost")
    log.error("reopen failed")
    log.critical("giving up")
    assert out.getvalue().splitlines() == [
        "<7>agent.adapters.serial_gnss: raw line",
        "<6>agent.adapters.serial_gnss: port opened",
        "<4>agent.adapters.serial_gnss: GNSS lost",
        "<3>agent.adapters.serial_gnss: reopen failed",
        "<2>agent.adapters.serial_gnss: giving up",
    ]


def test_every_traceback_line_keeps_the_priority():
    out = io.StringIO()
    logsetup.configure("INFO", journald=True, stream=out)
    try:
        raise RuntimeError("broker refused")
    except RuntimeError:
        logging.getLogger("agent.runtime").exception("link failed")
    lines = out.getvalue().splitlines()
    assert len(lines) > 3
    assert all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>RuntimeError: broker refused"


def test_plain_format_for_a_person_at_a_terminal():
    out = io.StringIO()
    logsetup.configure("INFO", journald=False, stream=out)
    logging.getLogger("agent.cli").debug("hidden")
    logging.getLogger("agent.cli").warning("config has no [ui] section")
    text = out.getvalue()
    assert "hidden" not in text
    assert not text.startswith("<")
    assert " WARNING agent.cli: config has no [ui] section" in text


def test_journal_detected_only_when_journal_stream_is_our_stream(tmp_path):
    with open(tmp_path / "stderr", "w") as stream, open(tmp_path / "other", "w") as other:
        st = os.fstat(stream.fileno())
        ours = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert logsetup.stream_is_journal(stream, ours)
        assert not logsetup.stream_is_journal(other, ours)  # inherited, but redirected
        assert not logsetup.stream_is_journal(stream, {})
        assert not logsetup.stream_is_journal(stream, {"JOURNAL_STREAM": "garbage"})
        assert not logsetup.stream_is_journal(io.StringIO(), ours)

        logsetup.configure("INFO", stream=stream, env=ours)
        logging.getLogger("agent").info("ready")
        stream.flush()
    assert (tmp_path / "stderr").read_text() == "<6>agent: ready\n"


def test_configure_twice_replaces_its_handler():
    first, second = io.StringIO(), io.StringIO()
    logsetup.configure("INFO", journald=True, stream=first)
    logsetup.configure("INFO", journald=True, stream=second)
    logging.getLogger("agent").info("once")
    assert first.getvalue() == ""
    assert second.getvalue() == "<6>agent: once\n"


def test_warnings_go_through_logging():
    out = io.StringIO()
    logsetup.configure("INFO", journald=True, stream=out)
    warnings.warn("deprecated option", UserWarning, stacklevel=1)
    assert out.getvalue().startswith("<4>py.warnings: ")
    assert "deprecated option" in out.getvalue()


def test_unknown_level_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logsetup.configure("loud", journald=True, stream=io.StringIO())
