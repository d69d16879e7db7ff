// Text fitting: long texts wrap, then shrink together down to a minimum size,
// and only then may a word too long for its line break. Nothing runs under a
// neighbour: every box is measured after the render that filled it.

import { $ } from "./dom.js";

export function overflows(el) {
  return el.scrollWidth > el.clientWidth || el.scrollHeight > el.clientHeight;
}

// Shrink the texts of a box together (down to minScale of their own size,
// never below 12 px) until the box and each of them fit.
export function fitBox(box, items, minScale = 0.6) {
  if (!box || box.offsetParent === null) return;
  items = items.filter((el) => el && el.textContent);
  for (const el of items) {
    el.style.fontSize = "";
    el.classList.remove("breaking");
  }
  const base = items.map((el) => parseFloat(getComputedStyle(el).fontSize));
  const over = () => overflows(box) || items.some(overflows);
  for (let scale = 0.95; over() && scale > minScale - 0.001; scale -= 0.05) {
    items.forEach((el, i) => {
      el.style.fontSize = `${Math.max(12, base[i] * scale).toFixed(1)}px`;
    });
  }
  if (over()) for (const el of items) el.classList.add("breaking");
}

export function fitText(el, minScale = 0.6) {
  fitBox(el, [el], minScale);
}

// A call card: priority, nature and address must show whole; details get
// the lines left over (clamped with an ellipsis), caller last (on a new call,
// the caller gives way to two lines of details).
export function fitCall(root) {
  if (root.offsetParent === null) return;
  const details = $(".details", root);
  const caller = $(".caller", root);
  details.style.webkitLineClamp = "";
  details.hidden = true;
  caller.hidden = true;
  const where = $(".where", root);
  fitText($(".nature", root), 0.55);
  fitBox($(".call-head", root), [$(".nature", root), $(".prio", root)], 0.6);
  fitBox(where, [$(".address", root)], 0.55);
  // Then what room is left: the caller's line, then as many lines of details as fit.
  caller.hidden = !caller.textContent;
  if (!caller.hidden && overflows(where)) caller.hidden = true;
  details.hidden = !details.textContent;
  if (!details.hidden) {
    const lh = parseFloat(getComputedStyle(details).lineHeight) || 24;
    // The lines left for the details: the box's height less what the others take (and the gaps).
    const room = () => {
      const shown = Array.from(where.children).filter((el) => !el.hidden && el.offsetParent !== null);
      const others = shown.filter((el) => el !== details).reduce((h, el) => h + el.offsetHeight, 0);
      const gaps = (parseFloat(getComputedStyle(where).rowGap) || 0) * Math.max(0, shown.length - 1);
      return Math.floor((where.clientHeight - others - gaps) / lh + 0.02);
    };
    let lines = room();
    // A new call's details weigh on the crew's decision ("one of them armed"): before it is
    // answered they come before the caller's line.
    if (root.id === "takeover" && lines < 2 && !caller.hidden) {
      caller.hidden = true;
      lines = room();
    }
    // Still short of two lines: the address gives up some size (not below 16 px) for them.
    const address = $(".address", root);
    let size = parseFloat(getComputedStyle(address).fontSize);
    while (root.id === "takeover" && lines < 2 && size > 16) {
      size -= 1;
      address.style.fontSize = `${size}px`;
      lines = room();
    }
    if (lines < 1) details.hidden = true;
    else details.style.webkitLineClamp = String(Math.min(lines, 6));
  }
  fitBox($(".nav", root), [$(".dist", root), $(".frame", root)], 0.6);
}
