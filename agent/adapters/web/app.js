// The car touchscreen's page: ES modules, no build step, no framework.
//
// The agent pushes a full snapshot of what to show and of what may be
// pressed (the contract is in agent/adapters/web_ui.py) over Server-Sent
// Events; the page draws the newest one and holds no rule of its own: which
// controls exist, what the alarm control does, its hold time and cancel
// window, whether a call takes the whole screen and how its alert sounds all
// come from the snapshot. Between snapshots only time moves (clocks, ages,
// countdowns, the hold ring).
//
// One module per concern, in js/:
//   snapshot.js  the newest snapshot, the agent's clock, what may be posted
//   stream.js    the event stream, its watchdog and reconnection
//   strings.js   i18n (i18n/<lang>.json) and number, time and distance formats
//   render.js    the page from a snapshot; call.js the call card and its dial
//   band.js      the band: agent lost, the alarm, notices
//   alarm.js     the alarm control's look; hold.js its touch (hold / cancel)
//   input.js     touches posted to the agent; confirm.js the ones that take two
//   fit.js       text fitting (wrap, then shrink, never under a neighbour)
//   audio.js     the new call's alert sound
//   prefs.js     this screen's language and theme choices (localStorage)
//   almanac.js   the sun's elevation, for the "auto" theme
//   dom.js       small DOM helpers

import { isNight, sunElevation } from "./js/almanac.js";
import { forgetFit } from "./js/alarm.js";
import { needsConfirm, touch } from "./js/confirm.js";
import { onResize } from "./js/band.js";
import { $$ } from "./js/dom.js";
import { installHold } from "./js/hold.js";
import { tapInput } from "./js/input.js";
import { savePref } from "./js/prefs.js";
import { applyLangTheme, currentThemeMode, forgetButtons, render, tick } from "./js/render.js";
import { current, receive } from "./js/snapshot.js";
import { openStream } from "./js/stream.js";
import { currentLang, formatDistance, formatDuration, loadStrings } from "./js/strings.js";

document.addEventListener("click", (ev) => {
  const el = ev.target.closest("button");
  if (!el) return;
  const snap = current();
  if (el.id === "btn-lang") {
    savePref("lang", currentLang() === "ar" ? "fr" : "ar", snap && snap.lang === "ar" ? "ar" : "fr");
    forgetButtons();
    render();
  } else if (el.id === "btn-theme") {
    const next = { auto: "night", night: "day", day: "auto" }[currentThemeMode()] || "auto";
    savePref("theme", next, (snap && snap.theme) || "auto");
    render();
  } else if (el.dataset.input) {
    const name = el.dataset.input;
    const call = snap && snap.call;
    if (needsConfirm(snap, name)) {
      // The first touch asks to confirm; only the second one, in time, is posted.
      if (!touch(snap, name, call ? call.id : null, render)) {
        render();
        return;
      }
      render();
    }
    tapInput(name, el);
  }
});

installHold();
// A band that grows or shrinks changes the call card's room: draw it again.
onResize(() => {
  const snap = current();
  if (snap && snap.call) render();
});

async function boot() {
  render();
  await loadStrings();
  render();
  openStream({
    snapshot(snap) {
      receive(snap);
      render();
    },
    connection: tick,
  });
  setInterval(tick, 500);
  setInterval(applyLangTheme, 60000); // "auto" follows the sun
  // Text is fitted to measured sizes: measure again once the fonts are in, and on a resize.
  const refit = () => {
    forgetFit();
    if (current()) render();
  };
  document.fonts.ready.then(refit);
  document.fonts.addEventListener("loadingdone", refit);
  window.addEventListener("resize", refit);
}

window.umps = { sunElevation, isNight, formatDistance, formatDuration, render, snapshot: current };
boot();
