// Draws the page from the newest snapshot: top bar, status column, status or
// call card, call controls, the fullscreen new call, the alarm control and
// band. tick() redraws what moves with time alone (clock, "since", the call's
// age, the alarm countdown) between snapshots. Texts are fitted last, once
// every region has its final size.

import { isNight } from "./almanac.js";
import { renderSos } from "./alarm.js";
import { updateAlert } from "./audio.js";
import { renderBand, renderNotice } from "./band.js";
import { renderCallInto } from "./call.js";
import { $, $$, setAttr, setText } from "./dom.js";
import { fitBox, fitCall, fitText } from "./fit.js";
import { effective } from "./prefs.js";
import { agentNow, allowed, current, secondsSince, secondsSinceSnapshot } from "./snapshot.js";
import { armed } from "./confirm.js";
import { isConnected } from "./stream.js";
import { currentLang, formatClock, formatDuration, setLang, statusLabel, t } from "./strings.js";

let themeMode = "auto";
let theme = "day";
let statusKey = null;
let controlsKey = null;

export function currentThemeMode() {
  return themeMode;
}

// Built again on the next render (a language change renames them).
export function forgetButtons() {
  statusKey = controlsKey = null;
}

export function applyLangTheme() {
  const snap = current();
  const cfgLang = snap && (snap.lang === "ar" || snap.lang === "fr") ? snap.lang : "fr";
  const cfgTheme = snap && ["auto", "day", "night"].includes(snap.theme) ? snap.theme : "auto";
  setLang(effective("lang", cfgLang));
  themeMode = effective("theme", cfgTheme);
  theme = themeMode;
  if (theme === "auto") {
    const g = snap && snap.gnss;
    const fixed = g && g.mode >= 2;
    theme = isNight(new Date(agentNow()), fixed ? g.lat : null, fixed ? g.lon : null) ? "night" : "day";
  }
  const lang = currentLang();
  const root = document.documentElement;
  setAttr(root, "lang", lang);
  setAttr(root, "dir", lang === "ar" ? "rtl" : "ltr");
  setAttr(root, "data-theme", theme);
  document.title = t("title");
  setText($("#btn-lang .txt"), t("switch_lang"));
  setText($("#btn-theme .icon"), { auto: "◐", day: "☀", night: "☾" }[themeMode]);
  setText($("#btn-theme .txt"), t(`theme_${themeMode}`));
}

function renderIndicators(snap) {
  const link = snap.link || {};
  const linkEl = $("#ind-link");
  linkEl.className = `ind ${link.online ? "good" : "bad"}`;
  let linkText = link.online ? t("online") : t("offline");
  if (link.backlog > 0) linkText += ` · ${t("backlog", { n: link.backlog })}`;
  setText($(".txt", linkEl), linkText);

  const g = snap.gnss || {};
  const gnssEl = $("#ind-gnss");
  const stale = !!g.stale;
  const lost = g.receiver === "lost";
  gnssEl.className = `ind ${lost ? "bad" : g.mode >= 3 && !stale ? "good" : g.mode >= 2 ? "warn" : "bad"}`;
  // An unplugged receiver is a fault to report; no fix under a bridge is not.
  let gnssText = lost ? t("gnss_receiver_lost") : g.mode >= 3 ? t("gnss_3d") : g.mode === 2 ? t("gnss_2d") : t("gnss_no_fix");
  if (stale) gnssText += ` · ${t("gnss_age", { s: formatDuration(g.age) })}`;
  setText($(".txt", gnssEl), gnssText);

  const sirenEl = $("#ind-siren");
  sirenEl.className = `ind ${snap.siren ? "alert" : ""}`;
  setText($(".txt", sirenEl), snap.siren ? t("siren_on") : t("siren_off"));
  for (const el of $$("#indicators .txt.fit-w")) fitText(el, 0.7);
}

function renderStatuses(snap) {
  const nav = $("#statuses");
  const codes = Array.isArray(snap.status_buttons) ? snap.status_buttons : [];
  const key = JSON.stringify([codes, currentLang(), snap.status_labels]);
  if (key !== statusKey) {
    statusKey = key;
    nav.replaceChildren(
      ...codes.map((code) => {
        const b = document.createElement("button");
        b.type = "button";
        b.dataset.input = code;
        b.dataset.status = code;
        const name = document.createElement("span");
        name.className = "name";
        name.textContent = statusLabel(snap, code);
        const since = document.createElement("span");
        since.className = "since";
        b.append(name, since);
        return b;
      })
    );
  }
  for (const b of nav.children) {
    b.classList.toggle("current", b.dataset.status === snap.status);
    b.classList.toggle("unavailable", !allowed(b.dataset.input));
    setAttr(b, "aria-pressed", b.dataset.status === snap.status ? "true" : "false");
  }
  renderSince();
}

// The time since the status was set, on the current status button and the status card.
// A status set before this run began: the time since the start, said as such.
function renderSince() {
  const snap = current();
  if (!snap) return;
  const since = snap.status_since ? secondsSince(snap.status_since) : null;
  let text = since === null ? "" : t("since", { t: formatDuration(since) });
  if (since === null && typeof snap.started_s === "number") {
    text = t("since_start", { t: formatDuration(snap.started_s + secondsSinceSnapshot()) });
  }
  setText($("#idle .since"), text);
  for (const b of $$("#statuses button")) {
    const el = $(".since", b);
    const shown = b.dataset.status === snap.status ? text : "";
    if (el.textContent !== shown) {
      setText(el, shown);
      el.hidden = !shown;
      fitBox(b, [$(".name", b), el]);
    }
  }
}

function renderIdle(snap) {
  const card = $("#idle");
  setAttr(card, "data-status", snap.status);
  setText($(".caption", card), t("current_status"));
  setText($(".label", card), statusLabel(snap, snap.status));
  const unit = snap.unit || {};
  setText($(".unit-name bdi", card), unit.name || unit.id || "");
}

function renderControls(snap, call) {
  const box = $("#call-controls");
  const names = Array.isArray(snap.call_controls) ? snap.call_controls : [];
  const key = JSON.stringify([names, currentLang(), snap.status_labels]);
  if (key !== controlsKey) {
    controlsKey = key;
    box.replaceChildren(
      ...names.map((name) => {
        const b = document.createElement("button");
        b.type = "button";
        b.dataset.input = name;
        b.dataset.status = name; // en route / on scene wear their status colour
        b.textContent = t(name);
        return b;
      })
    );
  }
  for (const b of box.children) b.classList.toggle("current", !!call && call.state === b.dataset.input);
  box.hidden = names.length === 0;
  $("#footer-info").hidden = names.length !== 0;
  setText($("#footer-message"), call ? t(`call_state_${call.state}`) : t("no_call"));
  for (const b of box.children) fitText(b);
  fitText($("#footer-info"));
}

export function render() {
  applyLangTheme();
  const snap = current();
  const app = $("#app");
  if (!snap) {
    renderBand();
    return;
  }
  renderIndicators(snap);
  renderStatuses(snap);
  renderIdle(snap);

  const call = snap.call || null;
  const cardEl = $("#call");
  $("#idle").hidden = !!call;
  cardEl.hidden = !call;
  if (call) renderCallInto(cardEl, call, snap);
  renderControls(snap, call);

  const big = call && snap.takeover ? call : null;
  const over = $("#takeover");
  over.hidden = !big;
  app.classList.toggle("taken", !!big);
  if (big) {
    renderCallInto(over, big, snap);
    const confirming = armed("decline", big.id);
    setText($("#btn-decline"), confirming ? t("decline_confirm") : t("decline"));
    $("#btn-decline").classList.toggle("confirm", confirming);
    setText($("#btn-accept"), t("accept"));
    $("#btn-decline").hidden = !allowed("decline");
    $(".takeover-actions", over).classList.toggle("no-decline", !allowed("decline"));
  }
  updateAlert(big ? snap.alert : null, theme === "night");

  const em = (snap.emergency && snap.emergency.state) || "none";
  setAttr(app, "data-emergency", em);
  renderNotice(snap.notice);
  tick();
  // Fitted last, once every region has its final size.
  if (call && !big) fitCall(cardEl);
  if (big) {
    fitCall(over);
    for (const b of $$(".takeover-actions .act")) fitText(b);
  }
  fitBox($("#idle"), [$("#idle .label"), $("#idle .since"), $("#idle .caption")], 0.5);
  for (const b of $$("#statuses button")) fitBox(b, [$(".name", b), $(".since", b)]);
}

// The band took or gave back room: the card's texts fit a new box.
export function refitCall() {
  const snap = current();
  if (!snap || !snap.call) return;
  if (!$("#call").hidden) fitCall($("#call"));
  if (!$("#takeover").hidden) fitCall($("#takeover"));
}

// Everything that moves with time alone: clocks, ages, countdowns, the ring.
export function tick() {
  const snap = current();
  setText($("#ind-clock .txt"), formatClock(agentNow()));
  $("#app").classList.toggle("offline", !isConnected());
  const bandChanged = renderBand();
  if (!snap) return;

  renderSince();
  const call = snap.call;
  if (call) {
    // The agent's judgement of the age, counted on between snapshots. Without trusted time on
    // the unit "created" cannot be compared with "now": say so, never guess.
    const unverified = call.age_verified === false || typeof call.age_s !== "number";
    const age = unverified ? null : call.age_s + secondsSinceSnapshot();
    for (const el of $$("#call .age, #takeover .age")) {
      setText(el, unverified ? t("age_unverified") : formatDuration(age));
      el.classList.toggle("unverified", unverified);
    }
    // A call that has just taken the screen is answered a moment later (the agent's read rule).
    const reading = typeof call.answer_in_s === "number" && call.answer_in_s - secondsSinceSnapshot() > 0;
    $("#btn-accept").classList.toggle("reading", reading);
    $("#btn-decline").classList.toggle("reading", reading);
  }
  renderSos();
  if (bandChanged) refitCall();
}

