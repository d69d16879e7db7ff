// The new call's alert sound. What to play and how often is the snapshot's
// "alert" ({call_id, url, loop, plays}); this module only plays it, and says
// so on the call screen when the browser blocks sound until a first touch
// (a kiosk without --autoplay-policy=no-user-gesture-required).

import { $, setText } from "./dom.js";
import { t } from "./strings.js";

const audio = document.getElementById("alert-audio");
let key = null;
let playing = null; // the alert being played, or null
let plays = 0;
let blocked = false;

export function updateAlert(alert, night) {
  const next = alert ? `${alert.call_id}|${alert.url}` : null;
  if (next === key) return;
  stopAlert();
  key = next;
  if (!alert) return;
  audio.src = alert.url;
  audio.loop = !!alert.loop;
  audio.volume = night ? 0.7 : 1.0;
  playing = alert;
  plays = 0;
  playAlert();
}

function playAlert() {
  if (!playing) return;
  audio.play().then(
    () => setBlocked(false),
    (err) => {
      if (err && err.name === "NotAllowedError") setBlocked(true);
    }
  );
}

function setBlocked(value) {
  blocked = value;
  const hint = $("#takeover .sound-hint");
  hint.hidden = !value;
  setText(hint, t("sound_blocked"));
}

function stopAlert() {
  if (playing) {
    audio.pause();
    audio.removeAttribute("src");
    audio.load();
  }
  playing = null;
  key = null;
  setBlocked(false);
}

audio.addEventListener("ended", () => {
  plays += 1;
  if (playing && plays < (playing.plays || 1)) playAlert();
});

// Any touch counts as the gesture a browser without the kiosk flag wants.
document.addEventListener("pointerdown", () => {
  if (blocked) playAlert();
});
