"""Spoken read-out of calls through espeak-ng (agent.adapters.speech)."""

import shutil
import stat
import time
import wave
from pathlib import Path

import pytest

from agent.adapters.speech import Speaker, SpeechError, synthesize_wav
from agent.core.i18n import Catalog
from agent.core.panel_view import CallSummary, spoken_call

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        frames = wav.readframes(wav.getnframes())
        assert any(frames), "the WAV is silent"
        return wav.getnframes() / wav.getframerate()


@needs_espeak
@pytest.mark.parametrize("lang, call", [
    ("fr", CallSummary("C-1", 1, "Accident de la circulation", "Avenue Mohammed V", 850.0, 40.0)),
    ("ar", CallSummary("C-1", 1, "حادثة سير", "شارع محمد الخامس", 2_400.0, 225.0)),
])
def test_a_call_is_spoken_into_a_wav(tmp_path, lang, call):
    text = spoken_call(call, Catalog(lang))
    seconds = wav_seconds(synthesize_wav(text, lang, tmp_path / f"{lang}.wav"))
    assert 2.0 < seconds < 30.0  # a real sentence, not a click


@needs_espeak
def test_more_text_is_more_speech(tmp_path):
    short = wav_seconds(synthesize_wav("Appel.", "fr", tmp_path / "a.wav"))
    long = wav_seconds(synthesize_wav("Nouvel appel, priorité un. Accident de la circulation.", "fr", tmp_path / "b.wav"))
    assert long > short * 2


def test_errors_are_clear(tmp_path):
    with pytest.raises(SpeechError, match="not found"):
        synthesize_wav("x", "fr", tmp_path / "x.wav", espeak="no-such-espeak")
    if shutil.which("espeak-ng"):
        with pytest.raises(SpeechError, match="no voice"):
            synthesize_wav("x", "de", tmp_path / "x.wav")


def test_disabled_by_default_and_without_espeak():
    assert Speaker().speak("Nouvel appel", "fr") is False
    assert Speaker(enabled=True, espeak="no-such-espeak").speak("Nouvel appel", "fr") is False


def fake_espeak(tmp_path: Path, body: str) -> str:
    """A stand-in for espeak-ng that logs its arguments (one call per line) and then runs ``body``."""
    script = tmp_path / "espeak-fake"
    log = tmp_path / "said.log"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@needs_espeak
def test_speaker_runs_espeak_without_blocking_the_caller():
    speaker = Speaker(enabled=True)
    try:
        started = time.monotonic()
        assert speaker.speak("Nouvel appel, priorité un.", "fr")
        assert time.monotonic() - started < 0.5  # queued, not spoken on the caller's thread
        assert speaker.wait_idle(20)
        assert speaker.spoken == 1 and speaker.failed == 0
    finally:
        speaker.close()


def test_newest_call_wins_when_the_queue_is_full(tmp_path):
    speaker = Speaker(enabled=True, espeak=fake_espeak(tmp_path, "sleep 0.2"), queue_size=2)
    try:
        for n in range(6):
            assert speaker.speak(f"appel {n}", "fr")
        assert speaker.wait_idle(10)
        said = (tmp_path / "said.log").read_text().splitlines()
        assert speaker.spoken + speaker.dropped == 6 and speaker.dropped >= 3
        assert said[-1] == "-v fr -- appel 5"  # the latest call is always read out
        assert said == sorted(said, key=lambda line: int(line.rsplit(" ", 1)[1]))  # in order
    finally:
        speaker.close()


def test_a_hung_synthesizer_is_killed_after_the_timeout(tmp_path):
    speaker = Speaker(enabled=True, espeak=fake_espeak(tmp_path, "exec sleep 30"), timeout_s=0.3)
    try:
        speaker.speak("appel", "ar")
        assert speaker.wait_idle(10)
        assert speaker.failed == 1 and speaker.spoken == 0
        assert (tmp_path / "said.log").read_text().strip() == "-v ar -- appel"
    finally:
        speaker.close()


def test_close_stops_a_sentence_in_progress(tmp_path):
    speaker = Speaker(enabled=True, espeak=fake_espeak(tmp_path, "exec sleep 30"), timeout_s=60)
    speaker.speak("appel", "fr")
    deadline = time.monotonic() + 5
    while not (tmp_path / "said.log").exists() and time.monotonic() < deadline:
        speaker.wait_idle(0.05)  # bounded wait until the fake has started
    started = time.monotonic()
    speaker.close(timeout=5)
    assert time.monotonic() - started < 5
