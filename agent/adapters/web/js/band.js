// The band under the top bar: the agent lost, the alarm, the newest notice.
// It takes its room from the call card's region (the grid row grows), never
// lies over a control; when it grows or shrinks, the card's texts are fitted
// again (the hook set by onResize).

import { $, setText } from "./dom.js";
import { alarmState } from "./alarm.js";
import { fitText } from "./fit.js";
import { current } from "./snapshot.js";
import { isConnected } from "./stream.js";
import { t } from "./strings.js";

const NOTICE_MS = 8000;

let notice = null; // {text, kind, until}
let lastNoticeKey = null;
let resized = () => {};

export function onResize(fn) {
  resized = fn;
}

export function renderBand() {
  const snap = current();
  const connected = isConnected();
  if (notice && performance.now() > notice.until) notice = null;
  const linkEl = $("#band-link");
  linkEl.hidden = connected && !!snap;
  if (!linkEl.hidden) setText(linkEl, connected ? t("waiting") : t("disconnected"));

  const alarmEl = $("#band-alarm");
  const em = alarmState();
  alarmEl.hidden = !["pending", "active", "acknowledged"].includes(em.shown);
  alarmEl.classList.toggle("pending", em.shown === "pending");
  if (em.shown === "pending") setText(alarmEl, t("band_pending", { s: em.left }));
  else if (em.shown === "active") setText(alarmEl, t("band_active"));
  else if (em.shown === "acknowledged") setText(alarmEl, t("band_acknowledged"));

  const noticeEl = $("#band-notice");
  noticeEl.hidden = !notice;
  if (notice) {
    noticeEl.className = `band-line ${notice.kind || ""}`;
    setText(noticeEl, notice.text);
  }
  const band = $("#band");
  const wasHidden = band.hidden;
  band.hidden = linkEl.hidden && alarmEl.hidden && noticeEl.hidden;
  for (const el of [linkEl, alarmEl, noticeEl]) if (!el.hidden) fitText(el, 0.7);
  return wasHidden !== band.hidden;
}

// The snapshot's notice, shown once (the same one again is not a new notice).
export function renderNotice(next) {
  if (!next || !next.text) {
    lastNoticeKey = null;
    return;
  }
  const key = JSON.stringify(next);
  if (key === lastNoticeKey) return;
  lastNoticeKey = key;
  let text = next.text;
  if (next.kind === "cancelled") {
    // Which call, and the dispatcher's reason as they wrote it.
    text = t("notice_cancelled");
    if (next.subject) text += t("notice_subject", { s: next.subject });
    if (next.reason) text += ` – ${t("notice_reason", { r: next.reason })}`;
  }
  showNotice(text, next.kind);
}

export function showNotice(text, kind) {
  notice = { text, kind, until: performance.now() + NOTICE_MS };
  if (renderBand()) resized();
}
