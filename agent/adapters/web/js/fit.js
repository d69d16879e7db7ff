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
// the lines left over (clamped with an ellipsis), caller last.
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
    const used = where.scrollHeight - details.offsetHeight;
    const lines = Math.floor((where.clientHeight - used) / lh);
    if (lines < 1) details.hidden = true;
    else details.style.webkitLineClamp = String(Math.min(lines, 6));
  }
  fitBox($(".nav", root), [$(".dist", root), $(".frame", root)], 0.6);
}
