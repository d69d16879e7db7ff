// The call, in the card (once answered) or fullscreen (while new): priority,
// nature, address, details, caller, its age (flagged when it was already old
// on arrival, "unverified" when the unit has no trusted time), the calls
// waiting behind it, and a dial with the way to the incident.
// Heading-up or north-up is the snapshot's gnss.heading_deg (null: standing,
// where the GNSS track means nothing).

import { $, SVG, setAttr, setText } from "./dom.js";
import { formatDistance, formatDuration, t } from "./strings.js";

function buildDial(container) {
  if (container.firstChild) return;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "-50 -50 100 100");
  svg.innerHTML =
    '<circle class="rim" r="46"/>' +
    '<g class="north-g"><text class="north" x="0" y="-30" text-anchor="middle" dominant-baseline="middle"></text></g>' +
    // A wide head on a straight shaft: tip and tail cannot be taken for each other.
    '<g class="arrow-g"><path class="arrow" d="M0,-38 L26,-4 L9,-4 L9,36 L-9,36 L-9,-4 L-26,-4 Z"/></g>';
  container.appendChild(svg);
}

export function renderCallInto(root, call, snap) {
  setAttr(root, "data-priority", call.priority);
  setAttr(root, "data-state", call.state);
  // "P1" is Latin whatever the language: isolate it left-to-right (LRI..PDI).
  const prio = `\u2066P${call.priority}\u2069`;
  setText($(".prio", root), root.id === "takeover" ? `${prio} ${t(`priority_name_${call.priority}`)}` : prio);
  // The code stays in one piece (non-breaking hyphens).
  setText($(".nature", root), call.code ? `${call.nature} · ${call.code.replaceAll("-", "\u2011")}` : call.nature || "");
  setText($(".address", root), call.address || "");
  setText($(".details", root), call.details || "");
  setText($(".caller", root), call.caller ? t("caller", { c: call.caller }) : "");
  setText($(".call-state", root), t(`call_state_${call.state}`));
  root.classList.toggle("stale", call.stale === true);
  setText($(".stale-tag", root), call.stale === true ? t("stale_call") : "");
  const waiting = typeof snap.waiting === "number" ? snap.waiting : 0;
  setText($(".waiting", root), waiting > 0 ? t("waiting_calls", { n: waiting }) : "");

  const dial = $(".dial", root);
  buildDial(dial);
  const g = snap.gnss || {};
  const known = typeof call.bearing_deg === "number" && typeof call.distance_m === "number";
  dial.classList.toggle("unknown", !known);
  // Heading-up while moving (the arrow then says "turn this way"), north-up standing.
  const moving = typeof g.heading_deg === "number";
  const up = moving ? g.heading_deg : 0;
  setText($(".north", dial), t("north"));
  setAttr($(".north-g", dial), "transform", `rotate(${-up})`);
  setAttr($(".arrow-g", dial), "transform", known ? `rotate(${call.bearing_deg - up})` : null);
  setText($(".dist", root), known ? formatDistance(call.distance_m) : "");
  // No location in the call is the dispatcher's gap, not this unit's GNSS. A position no longer
  // current (the fix went, or a restart without one) keeps the way, north-up, and says its age.
  const aged = known && typeof call.position_age_s === "number";
  const frame = aged ? t("position_age", { t: formatDuration(call.position_age_s) })
    : known ? t(moving ? "heading_up" : "north_up") : call.location ? t("no_own_position") : t("call_location_unknown");
  setText($(".frame", root), frame);
  $(".frame", root).classList.toggle("warn", !known || aged);
}
