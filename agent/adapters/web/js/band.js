// The band under the top bar: the agent lost, the link down for a while, the
// alarm, the newest notice.
// It takes its room from the call card's region (the grid row grows), never
// lies over a control; when it grows or shrinks, the card's texts are fitted
// again (the hook set by onResize).

import { $, setText } from "./dom.js";
import { alarmState } from "./alarm.js";
import { fitText, overflows } from "./fit.js";
import { current, secondsSinceSnapshot } from "./snapshot.js";
import { isConnected } from "./stream.js";
import { formatDuration, t } from "./strings.js";

const NOTICE_MS = 8000;

let notice = null; // {texts, kind, until}: texts from the fullest to the shortest
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

  // Offline for more than a moment: said in big letters, readable from the driver's seat.
  const offlineEl = $("#band-offline");
  const link = (snap && snap.link) || {};
  const offlineFor = typeof link.since_s === "number" ? link.since_s + secondsSinceSnapshot() : null;
  offlineEl.hidden = !snap || !connected || link.online !== false || offlineFor === null ||
    offlineFor < (link.alert_after_s ?? Infinity);
  if (!offlineEl.hidden) {
    let text = t("offline_long", { t: formatDuration(offlineFor) });
    if (link.backlog > 0) text += t("offline_backlog", { n: link.backlog });
    setText(offlineEl, text);
  }
  $("#app").classList.toggle("link-lost", !offlineEl.hidden);

  const alarmEl = $("#band-alarm");
  const em = alarmState();
  // A crash found: the server's words ("Chute détectée – appuyez ACK pour annuler (N s)"), in the
  // pre-alarm's window or the minor prompt's.
  const crash = snap && snap.crash;
  alarmEl.hidden = !crash && !["pending", "active", "acknowledged"].includes(em.shown);
  alarmEl.classList.toggle("pending", !!crash || em.shown === "pending");
  if (crash) setText(alarmEl, crash.text);
  else if (em.shown === "pending") setText(alarmEl, t("band_pending", { s: em.left }));
  else if (em.shown === "active") setText(alarmEl, t("band_active"));
  else if (em.shown === "acknowledged") setText(alarmEl, t("band_acknowledged"));

  const noticeEl = $("#band-notice");
  noticeEl.hidden = !notice;
  if (notice) noticeEl.className = `band-line ${notice.kind || ""}`;
  const band = $("#band");
  const wasHidden = band.hidden;
  band.hidden = linkEl.hidden && offlineEl.hidden && alarmEl.hidden && noticeEl.hidden;
  for (const el of [linkEl, offlineEl, alarmEl]) if (!el.hidden) fitText(el, 0.7);
  if (notice) {
    // The fullest form that fits its three lines (a long address gives way before the cut).
    for (const text of notice.texts) {
      setText(noticeEl, text);
      fitText(noticeEl, 0.7);
      if (!overflows(noticeEl)) break;
    }
  }
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
  let texts = [next.text];
  if (next.kind === "cancelled") {
    // Which call (its nature, and its address: another call of the same nature may be on
    // the screen, and then the notice says that one stays), and the dispatcher's reason
    // as they wrote it. Shorter forms for a band too small for it all.
    const head = t("notice_cancelled") + (next.subject ? t("notice_subject", { s: next.subject }) : "");
    const where = next.address ? t("notice_address", { a: next.address }) : "";
    const why = next.reason ? ` – ${t("notice_reason", { r: next.reason })}` : "";
    const stays = next.same_nature_shown ? t("notice_other_stays") : "";
    texts = [head + where + why + stays, head + why + stays, head + stays];
  }
  showNotice(texts, next.kind);
}

export function showNotice(texts, kind) {
  notice = { texts: Array.isArray(texts) ? texts : [texts], kind, until: performance.now() + NOTICE_MS };
  if (renderBand()) resized();
}
