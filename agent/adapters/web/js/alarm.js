// The alarm control and what it says: hold to raise, touch to cancel in the
// window, then only dispatch ends it. Which of these applies, the hold time,
// the seconds left and what the alarm becomes when the window closes all come
// from the snapshot's "emergency" (agent/core/screen_rules.py); the page
// counts the window down between snapshots and draws this screen's own hold
// at once, since the agent times it but a finger wants to see it move.

import { $, $$, SVG, setAttr, setText } from "./dom.js";
import { fitBox } from "./fit.js";
import { current, secondsSince, secondsSinceSnapshot } from "./snapshot.js";
import { currentLang, formatNumber, t } from "./strings.js";

let holdStart = null; // performance.now() when this screen's press began
let ringFrame = null; // the pending animation frame of the hold ring

export function setLocalHold(start) {
  holdStart = start;
}

// What the alarm shows now: the snapshot's state, counted down to what the
// agent said the window ends in (it has sent that by then: say so without
// waiting for its snapshot), and what a touch on the control does.
export function alarmState() {
  const snap = current();
  const em = (snap && snap.emergency) || { state: "none" };
  let shown = em.state || "none";
  let control = em.control || "none";
  let left = 0;
  if (shown === "pending") {
    const secs = typeof em.cancel_deadline_s === "number" ? em.cancel_deadline_s - secondsSinceSnapshot() : 0;
    left = Math.max(0, Math.ceil(secs));
    if (secs <= 0 && em.at_deadline) {
      shown = em.at_deadline.state;
      control = em.at_deadline.control;
    }
  }
  return { em, shown, left, control };
}

function buildRing(container) {
  if (container.firstChild) return;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 60 60");
  svg.innerHTML =
    '<circle class="track" cx="30" cy="30" r="24"/>' +
    '<circle class="fill" cx="30" cy="30" r="24" pathLength="100" stroke-dasharray="0 100"/>' +
    '<circle class="core" cx="30" cy="30" r="10"/>';
  container.appendChild(svg);
}

export function renderSos() {
  const { em, shown: alarmShown, left } = alarmState();
  const holdS = typeof em.hold_s === "number" && em.hold_s > 0 ? em.hold_s : null;
  let shown = alarmShown;
  let progress = 0;
  let hint = holdS ? t("sos_hint", { s: formatNumber(holdS, 0) }) : "";
  let label = t("sos");
  const now = performance.now();
  // This screen's own hold shows at once; a hold on the panel shows from the snapshot.
  let start = holdStart;
  if (start === null && shown === "holding" && em.since) {
    const held = secondsSince(em.since);
    if (held !== null) start = now - held * 1000;
  }
  if (shown === "none" && start !== null) shown = "holding";
  if (shown === "holding") {
    progress = start === null || !holdS ? 0 : Math.min(1, (now - start) / 1000 / holdS);
    hint = t("sos_holding");
  } else if (shown === "pending") {
    // The alarm is out; this touch withdraws it (the agent's cancel rule).
    label = t("sos_cancel");
    hint = t("sos_cancel_hint", { s: left });
    progress = left / Math.max(1, Math.ceil(em.cancel_deadline_s || 1));
  } else if (shown === "active") {
    label = t("sos_active");
    hint = t("sos_active_hint");
    progress = 1;
  } else if (shown === "acknowledged") {
    label = t("sos_acknowledged");
    hint = t("sos_acknowledged_hint");
    progress = 1;
  }
  for (const b of $$(".sos")) {
    buildRing($(".ring", b));
    setAttr(b, "data-state", shown);
    setText($(".sos-label", b), label);
    setText($(".sos-hint", b), hint);
    setAttr($(".ring .fill", b), "stroke-dasharray", `${(progress * 100).toFixed(1)} 100`);
    const key = `${label}|${hint}|${currentLang()}`;
    if (b.dataset.fitted !== key && b.offsetParent !== null) {
      b.dataset.fitted = key;
      fitBox($(".sos-text", b), [$(".sos-label", b), $(".sos-hint", b)], 0.6);
    }
  }
  if (shown === "holding" && !ringFrame) {
    ringFrame = requestAnimationFrame(() => {
      ringFrame = null;
      renderSos();
    });
  }
}

export function forgetFit() {
  for (const b of $$(".sos")) delete b.dataset.fitted;
}
