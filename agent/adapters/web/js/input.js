// Touches become POST /api/input {name, action}. A tap posts press then
// release; a lost release is retried, since it would leave the agent thinking
// the button is still held. The button flashes green when the agent took the
// touch and red when it did not (with a notice saying why).

import { showNotice } from "./band.js";
import { t } from "./strings.js";

export async function postInput(name, action) {
  const r = await fetch("/api/input", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name, action }),
    keepalive: true,
  });
  if (!r.ok) {
    const err = new Error(`HTTP ${r.status}`);
    err.status = r.status;
    throw err;
  }
}

function flash(el, cls) {
  el.classList.remove("sent", "failed");
  el.classList.add(cls);
  setTimeout(() => el.classList.remove(cls), 600);
}

export function inputFailed(el, err) {
  flash(el, "failed");
  showNotice(err && err.status === 400 ? t("not_available") : t("send_failed"), "refused");
}

export async function tapInput(name, el) {
  try {
    await postInput(name, "press");
    await postInput(name, "release");
    flash(el, "sent");
  } catch (err) {
    inputFailed(el, err);
  }
}

export async function release(name, el) {
  for (let attempt = 0; attempt < 4; attempt++) {
    try {
      await postInput(name, "release");
      return;
    } catch (err) {
      if (err.status === 400) break;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  inputFailed(el);
}
