// The alarm control's touch: what a touch does is the snapshot's
// emergency.control ("hold": post press on pointer down and release on
// up / cancel / leave, the agent times the hold; "cancel": a new touch posts
// emergency_cancel; "none": nothing, only dispatch ends an active alarm).
// A finger still down from the hold is not a new touch, so it cannot cancel
// by lifting.

import { $$ } from "./dom.js";
import { alarmState, renderSos, setLocalHold } from "./alarm.js";
import { inputFailed, postInput, release, tapInput } from "./input.js";

let holdPointer = null; // {id, el} of the finger holding the control

function holdDown(ev) {
  const el = ev.target.closest("[data-hold]");
  if (!el || ev.button > 0 || holdPointer !== null) return;
  ev.preventDefault();
  const { control } = alarmState();
  if (control === "cancel") {
    tapInput("emergency_cancel", el);
    return;
  }
  if (control !== "hold") return;
  holdPointer = { id: ev.pointerId, el };
  setLocalHold(performance.now());
  renderSos();
  postInput(el.dataset.hold, "press").catch((err) => inputFailed(el, err));
}

function holdUp(ev) {
  const hold = holdPointer;
  if (!hold || ev.pointerId !== hold.id) return;
  if (ev.type === "pointerleave" && ev.target !== hold.el) return;
  holdPointer = null;
  setLocalHold(null);
  renderSos();
  release(hold.el.dataset.hold, hold.el);
}

export function installHold() {
  for (const b of $$("[data-hold]")) {
    b.addEventListener("pointerdown", holdDown);
    b.addEventListener("pointerup", holdUp);
    b.addEventListener("pointercancel", holdUp);
    b.addEventListener("pointerleave", holdUp);
    b.addEventListener("contextmenu", (ev) => ev.preventDefault());
  }
  document.addEventListener("contextmenu", (ev) => ev.preventDefault());
}
