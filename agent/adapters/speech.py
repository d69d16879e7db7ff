"""Spoken read-out of new calls for a helmet intercom (espeak-ng), off by default.

A rider cannot read while riding; a short sentence in the helmet ("Nouvel
appel, priorité 1. Accident de la circulation...") does the job of the panel
until the next stop. The text comes from ``agent.core.panel_view.spoken_call``.

``Speaker.speak(text, lang)`` only queues the sentence and returns at once:
one worker thread runs ``espeak-ng -v fr|ar`` per sentence with a timeout, so
a slow or hung synthesizer never holds up the caller (the core thread). The
queue is small and the newest call wins: when it is full the oldest waiting
sentence is dropped (and counted), because a stale read-out is worse than
none. Arabic text is passed in logical order, unshaped: espeak-ng reads
Unicode, shaping is only for drawing.

``synthesize_wav`` writes the same speech to a WAV file (``espeak-ng -w``),
for checks and for the rig.
"""

from __future__ import annotations

import logging
import queue
import shutil
import subprocess
import threading
from pathlib import Path

log = logging.getLogger(__name__)

VOICES = {"fr": "fr", "ar": "ar"}
DEFAULT_TIMEOUT_S = 20.0


class SpeechError(RuntimeError):
    """espeak-ng is missing or failed."""


def _command(espeak: str, text: str, lang: str, wav: Path | None = None) -> list[str]:
    voice = VOICES.get(lang)
    if voice is None:
        raise SpeechError(f"no voice for language {lang!r}; known: {', '.join(VOICES)}")
    # "--" so a sentence starting with "-" is never taken for an option.
    return [espeak, "-v", voice, *(["-w", str(wav)] if wav else []), "--", text]


def synthesize_wav(text: str, lang: str, path: Path, *, espeak: str = "espeak-ng",
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> Path:
    """Speak ``text`` into a WAV file at ``path``; raises SpeechError on failure."""
    exe = shutil.which(espeak)
    if exe is None:
        raise SpeechError(f"{espeak} not found; install the Debian package espeak-ng")
    try:
        done = subprocess.run(_command(exe, text, lang, path), capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SpeechError(f"{espeak} took longer than {timeout_s} s") from exc
    if done.returncode != 0:
        raise SpeechError(f"{espeak} failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()}")
    return path


class Speaker:
    """Reads sentences aloud one after the other on a worker thread."""

    def __init__(self, *, enabled: bool = False, espeak: str = "espeak-ng", timeout_s: float = DEFAULT_TIMEOUT_S,
                 queue_size: int = 2) -> None:
        self.enabled = enabled
        self.timeout_s = timeout_s
        self.spoken = 0
        self.dropped = 0
        self.failed = 0
        self._exe = shutil.which(espeak) if enabled else None
        if enabled and self._exe is None:
            log.warning("speech read-out disabled: %s not found (Debian package espeak-ng)", espeak)
            self.enabled = False
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._current: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._pending = 0  # queued or being spoken; guarded by _done
        self._done = threading.Condition()
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="speech", daemon=True)
            self._thread.start()

    def speak(self, text: str, lang: str) -> bool:
        """Queue a sentence; never blocks. False when disabled, empty or of an unknown language."""
        if not self.enabled or not text.strip() or lang not in VOICES:
            return False
        with self._done:
            self._pending += 1
        while True:
            try:
                self._queue.put_nowait((text, lang))
                return True
            except queue.Full:
                try:  # the newest call wins over a sentence still waiting
                    self._queue.get_nowait()
                except queue.Empty:
                    continue
                self.dropped += 1
                self._finished()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything queued has been spoken, dropped or failed; False on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def _finished(self) -> None:
        with self._done:
            self._pending -= 1
            self._done.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        """Stop speaking now and join the worker; raises if it will not stop."""
        if self._thread is None:
            return
        while True:  # make room for the stop marker, dropping what was still to say
            try:
                self._queue.put_nowait(None)
                break
            except queue.Full:
                try:
                    if self._queue.get_nowait() is not None:
                        self.dropped += 1
                        self._finished()
                except queue.Empty:
                    pass
        with self._lock:
            if self._current is not None:
                self._current.kill()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("speech worker did not stop")
        self._thread = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            text, lang = item
            try:
                self._say(text, lang)
            except Exception:  # a bad sentence must not end the worker
                self.failed += 1
                log.exception("speech read-out failed")
            finally:
                self._finished()

    def _say(self, text: str, lang: str) -> None:
        assert self._exe is not None
        with self._lock:
            self._current = subprocess.Popen(_command(self._exe, text, lang), stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            process = self._current
        try:
            _, err = process.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            self.failed += 1
            log.warning("espeak-ng took longer than %.0f s; read-out abandoned", self.timeout_s)
            return
        finally:
            with self._lock:
                self._current = None
        if process.returncode == 0:
            self.spoken += 1
        else:
            self.failed += 1
            log.warning("espeak-ng failed (%s): %s", process.returncode, err.decode(errors="replace").strip())
