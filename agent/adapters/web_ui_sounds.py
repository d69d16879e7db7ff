"""The touchscreen's call alert sounds, synthesised at start as small WAV files.

Shipping audio binaries of unknown origin is avoided: each alert is a few
sine-tone beeps written with the standard ``wave`` module when the web UI
starts, kept in memory and served at ``/sounds/p<priority>.wav``.

One WAV holds one cycle of the alert; the page loops it (P1 and P2 until the
call is acknowledged, P3 three times), so the files stay a second or two
long. The rhythms follow the panel buzzer's default patterns (``call_p1``:
three fast beeps, ``call_p2``: two beeps, ``call_p3``: one long soft tone), so
a crew hears the same urgency on the touchscreen and on the panel; the pitch
falls with priority (P1 highest, most piercing).
"""

from __future__ import annotations

import io
import math
import struct
import wave

RATE = 22_050  # Hz; plenty for beeps, half the size of 44.1 kHz
FADE_S = 0.006  # ramp at each tone edge: no clicks

# priority -> (frequency Hz, amplitude 0..1, [(tone s, silence s), ...])
ALERTS: dict[int, tuple[float, float, list[tuple[float, float]]]] = {
    1: (1480.0, 0.80, [(0.15, 0.10), (0.15, 0.10), (0.15, 0.60)]),
    2: (1175.0, 0.65, [(0.30, 0.20), (0.30, 1.20)]),
    3: (880.0, 0.50, [(0.50, 2.00)]),
}


def tone_wav(frequency: float, amplitude: float, steps: list[tuple[float, float]]) -> bytes:
    """A mono 16-bit WAV of beeps: ``steps`` alternates tone and silence lengths."""
    frames = bytearray()
    fade = int(FADE_S * RATE)
    for tone_s, silence_s in steps:
        count = int(tone_s * RATE)
        for i in range(count):
            envelope = min(1.0, i / fade, (count - 1 - i) / fade) if fade else 1.0
            sample = amplitude * envelope * math.sin(2 * math.pi * frequency * i / RATE)
            frames += struct.pack("<h", int(sample * 32767))
        frames += b"\x00\x00" * int(silence_s * RATE)
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(bytes(frames))
    return out.getvalue()


def alert_sounds() -> dict[str, bytes]:
    """``{"p1.wav": b"RIFF...", ...}`` for every priority."""
    return {f"p{prio}.wav": tone_wav(*spec) for prio, spec in ALERTS.items()}
