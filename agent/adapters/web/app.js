// The car touchscreen's page logic: plain JS, no build step, no framework.
//
// The agent pushes a full snapshot of what to show (see web_ui.py for the
// contract) over Server-Sent Events; render() draws the page from the newest
// one, and a local timer keeps the clocks ticking ("since", cancel countdown,
// hold ring) between snapshots. Touches become POST /api/input
// {name, action}: ordinary buttons post press then release on a tap; the
// emergency button posts press on pointer down and release on up/cancel/leave,
// because the agent times the hold; during the cancel window it reads "cancel"
// and a touch on it posts "emergency_cancel" (the agent's cancel rule).
//
// Layout: a fixed grid (style.css). Texts that may be long are fitted after
// each render (fitBox): they wrap, then shrink down to a minimum size; they
// never run under a neighbour.
//
// If the stream drops the page keeps the last snapshot on screen, says "agent
// disconnected" and reconnects (EventSource retries by itself; a refused or
// silent stream is reopened by the watchdog below). Language and theme chosen
// on the screen are kept in localStorage and override the configured ones
// until the configuration changes.
"use strict";

(() => {
  const PREFS_KEY = "umps.prefs";
  const STATUS_ORDER = ["available", "en_route", "on_scene", "busy", "out_of_service"];
  const CALL_CONTROLS = ["en_route", "on_scene", "cleared"];
  const ENDED_CALL = new Set(["declined", "cleared", "cancelled"]);
  const NOTICE_MS = 8000;
  const SVG = "http://www.w3.org/2000/svg";

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  const state = {
    snap: null,
    recvAt: 0, // performance.now() when snap arrived
    clockOffset: 0, // agent time - local time, ms
    i18n: { fr: {}, ar: {} },
    connected: false,
    version: null,
    pingS: 5,
    lastMsgAt: 0,
    es: null,
    reconnectTimer: null,
    holdStart: null, // performance.now() when this screen's emergency press began
    holdPointer: null,
    ringFrame: null, // the pending animation frame of the hold ring
    notice: null, // {text, kind, until}
    lastNoticeKey: null,
    alert: { key: null, audio: null, plays: 0, blocked: false },
    statusKey: null,
    controlsKey: null,
    lang: "fr",
    theme: "day",
    themeMode: "auto",
  };

  // -------------------------------------------------------------- strings

  function t(key, vars) {
    const table = state.i18n[state.lang] || {};
    let s = table[key] ?? state.i18n.fr[key] ?? key;
    // Values are isolated (FSI..PDI) so a French name in an Arabic sentence,
    // or the reverse, keeps its own direction.
    if (vars) for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, `\u2068${v}\u2069`);
    return s;
  }

  function locale() {
    // Maghreb Arabic writes Latin digits; keep them in both languages.
    return state.lang === "ar" ? "ar-MA-u-nu-latn" : "fr-FR";
  }

  function formatNumber(value, digits) {
    return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(value);
  }

  function formatDuration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s} ${t("unit_s")}`;
    if (s < 600) return `${Math.floor(s / 60)} ${t("unit_min")} ${String(s % 60).padStart(2, "0")} ${t("unit_s")}`;
    if (s < 3600) return `${Math.floor(s / 60)} ${t("unit_min")}`;
    return `${Math.floor(s / 3600)} ${t("unit_h")} ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}`;
  }

  function formatDistance(m) {
    if (m < 1000) return `${Math.round(m / 10) * 10} ${t("unit_m")}`;
    if (m < 10000) return `${formatNumber(m / 1000, 1)} ${t("unit_km")}`;
    return `${formatNumber(m / 1000, 0)} ${t("unit_km")}`;
  }

  // ----------------------------------------------------------------- time

  function agentNow() {
    return Date.now() + state.clockOffset;
  }

  function secondsSince(iso) {
    const at = Date.parse(iso);
    return Number.isNaN(at) ? null : (agentNow() - at) / 1000;
  }

  // Solar elevation (degrees) by the usual low-precision almanac formulas:
  // good to a fraction of a degree, plenty to choose a screen theme.
  function sunElevation(date, lat, lon) {
    const rad = Math.PI / 180;
    const d = date.getTime() / 86400000 - 10957.5; // days since J2000.0
    const g = (357.529 + 0.98560028 * d) * rad;
    const q = 280.459 + 0.98564736 * d;
    const lambda = (q + 1.915 * Math.sin(g) + 0.02 * Math.sin(2 * g)) * rad;
    const eps = (23.439 - 0.00000036 * d) * rad;
    const ra = Math.atan2(Math.cos(eps) * Math.sin(lambda), Math.cos(lambda));
    const dec = Math.asin(Math.sin(eps) * Math.sin(lambda));
    const gmstHours = 18.697374558 + 24.06570982441908 * d;
    const hourAngle = ((gmstHours * 15 + lon) * rad) - ra;
    const sinEl = Math.sin(lat * rad) * Math.sin(dec) + Math.cos(lat * rad) * Math.cos(dec) * Math.cos(hourAngle);
    return Math.asin(sinEl) / rad;
  }

  // Night when the sun is 3 degrees below the horizon at the unit's position;
  // without a position, 19:00 to 07:00 local time.
  function isNight(date, lat, lon) {
    if (typeof lat === "number" && typeof lon === "number") return sunElevation(date, lat, lon) < -3;
    const h = date.getHours();
    return h >= 19 || h < 7;
  }

  // ---------------------------------------------------------- preferences

  function loadPrefs() {
    try {
      return JSON.parse(localStorage.getItem(PREFS_KEY)) || {};
    } catch (e) {
      return {};
    }
  }

  function savePref(key, value, configured) {
    const prefs = loadPrefs();
    if (value === configured) delete prefs[key];
    else prefs[key] = { value, base: configured };
    try {
      localStorage.setItem(PREFS_KEY, JSON.stringify(prefs));
    } catch (e) {
      /* private mode or full: the choice lasts until reload */
    }
  }

  // A local choice holds while the configured value it overrode is unchanged.
  // A stale one (the configuration moved on) is forgotten for good.
  function effective(key, configured) {
    const prefs = loadPrefs();
    const pref = prefs[key];
    if (!pref) return configured;
    if (pref.base === configured) return pref.value;
    savePref(key, configured, configured);
    return configured;
  }

  // ------------------------------------------------------------ rendering

  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }

  function setAttr(el, name, value) {
    if (!el) return;
    if (value === null || value === undefined) {
      if (el.hasAttribute(name)) el.removeAttribute(name);
    } else if (el.getAttribute(name) !== String(value)) {
      el.setAttribute(name, value);
    }
  }

  // ------------------------------------------------------------- fitting

  function overflows(el) {
    return el.scrollWidth > el.clientWidth || el.scrollHeight > el.clientHeight;
  }

  // Shrink the texts of a box together (down to minScale of their own size,
  // never below 12 px) until the box and each of them fit. Only if that is
  // not enough may a word too long for its line break.
  function fitBox(box, items, minScale = 0.6) {
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

  function fitText(el, minScale = 0.6) {
    fitBox(el, [el], minScale);
  }

  // A call card: priority, nature and address must show whole; details get
  // the lines left over (clamped with an ellipsis), caller last.
  function fitCall(root) {
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

  function applyLangTheme() {
    const snap = state.snap;
    const cfgLang = snap && (snap.lang === "ar" || snap.lang === "fr") ? snap.lang : "fr";
    const cfgTheme = snap && ["auto", "day", "night"].includes(snap.theme) ? snap.theme : "auto";
    state.lang = effective("lang", cfgLang);
    state.themeMode = effective("theme", cfgTheme);
    let theme = state.themeMode;
    if (theme === "auto") {
      const g = snap && snap.gnss;
      const fixed = g && g.mode >= 2;
      theme = isNight(new Date(agentNow()), fixed ? g.lat : null, fixed ? g.lon : null) ? "night" : "day";
    }
    state.theme = theme;
    const root = document.documentElement;
    setAttr(root, "lang", state.lang);
    setAttr(root, "dir", state.lang === "ar" ? "rtl" : "ltr");
    setAttr(root, "data-theme", theme);
    document.title = t("title");
    setText($("#btn-lang .txt"), t("switch_lang"));
    setText($("#btn-theme .icon"), { auto: "◐", day: "☀", night: "☾" }[state.themeMode]);
    setText($("#btn-theme .txt"), t(`theme_${state.themeMode}`));
  }

  // Labels come from the agent (configurable) in the snapshot's language,
  // either flat {code: label} or per language {fr: {...}, ar: {...}}. When the
  // screen shows another language than the snapshot's and only the flat form
  // came, this page's own names stand in.
  function statusLabel(code) {
    const snap = state.snap || {};
    const labels = snap.status_labels || {};
    const perLang = labels[state.lang];
    if (perLang && typeof perLang === "object" && perLang[code]) return perLang[code];
    if (typeof labels[code] === "string" && (snap.lang === state.lang || !state.i18n[state.lang][`status_${code}`])) return labels[code];
    return state.i18n[state.lang][`status_${code}`] || labels[code] || code;
  }

  function allowed(name) {
    const inputs = state.snap && state.snap.inputs;
    return Array.isArray(inputs) && inputs.includes(name);
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
    const stale = typeof g.age === "number" && g.age > 5;
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
    const codes = Array.isArray(snap.status_buttons) ? snap.status_buttons : STATUS_ORDER;
    const key = JSON.stringify([codes, state.lang, snap.status_labels]);
    if (key !== state.statusKey) {
      state.statusKey = key;
      nav.replaceChildren(
        ...codes.map((code) => {
          const b = document.createElement("button");
          b.type = "button";
          b.dataset.input = code;
          b.dataset.status = code;
          const name = document.createElement("span");
          name.className = "name";
          name.textContent = statusLabel(code);
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
  function renderSince() {
    const snap = state.snap;
    if (!snap) return;
    const since = snap.status_since ? secondsSince(snap.status_since) : null;
    const text = since === null ? "" : t("since", { t: formatDuration(since) });
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
    setText($(".label", card), statusLabel(snap.status));
    const unit = snap.unit || {};
    setText($(".unit-name bdi", card), unit.name || unit.id || "");
  }

  function buildDial(container) {
    if (container.firstChild) return;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "-50 -50 100 100");
    svg.innerHTML =
      '<circle class="rim" r="46"/>' +
      '<g class="north-g"><text class="north" x="0" y="-30" text-anchor="middle" dominant-baseline="middle"></text></g>' +
      '<g class="arrow-g"><path class="arrow" d="M0,-40 L17,14 L0,5 L-17,14 Z"/></g>';
    container.appendChild(svg);
  }

  function renderCallInto(root, call, snap) {
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

    const dial = $(".dial", root);
    buildDial(dial);
    const g = snap.gnss || {};
    const known = typeof call.bearing_deg === "number" && typeof call.distance_m === "number";
    dial.classList.toggle("unknown", !known);
    // Heading-up while moving (the arrow then says "turn this way"), north-up
    // when standing still, where the GNSS track is meaningless.
    const moving = g.mode >= 2 && g.receiver !== "lost" && typeof g.speed === "number" && g.speed >= 3 && typeof g.track === "number";
    const up = moving ? g.track : 0;
    setText($(".north", dial), t("north"));
    setAttr($(".north-g", dial), "transform", `rotate(${-up})`);
    setAttr($(".arrow-g", dial), "transform", known ? `rotate(${call.bearing_deg - up})` : null);
    setText($(".dist", root), known ? formatDistance(call.distance_m) : "");
    // No location in the call is the dispatcher's gap, not this unit's GNSS.
    const frame = known ? t(moving ? "heading_up" : "north_up") : call.location ? t("no_own_position") : t("call_location_unknown");
    setText($(".frame", root), frame);
    $(".frame", root).classList.toggle("warn", !known);
  }

  function renderControls(snap, call) {
    const box = $("#call-controls");
    const names = call && !ENDED_CALL.has(call.state) ? CALL_CONTROLS.filter(allowed) : [];
    const key = JSON.stringify([names, state.lang, snap.status_labels]);
    if (key !== state.controlsKey) {
      state.controlsKey = key;
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

  function takeoverCall(snap) {
    const call = snap && snap.call;
    return call && !call.acknowledged && !ENDED_CALL.has(call.state) ? call : null;
  }

  function render() {
    applyLangTheme();
    const snap = state.snap;
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

    const big = takeoverCall(snap);
    const over = $("#takeover");
    over.hidden = !big;
    app.classList.toggle("taken", !!big);
    if (big) {
      renderCallInto(over, big, snap);
      setText($("#btn-decline"), t("decline"));
      setText($("#btn-accept"), t("accept"));
      $("#btn-decline").hidden = !allowed("decline");
      $(".takeover-actions", over).classList.toggle("no-decline", !allowed("decline"));
    }
    updateAlert(big, snap);

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

  // The band under the top bar: agent lost, the alarm, the newest notice.
  // It takes its room from the call card's region (the grid row grows), never
  // lies over a control.
  function renderBand() {
    const snap = state.snap;
    const linkEl = $("#band-link");
    linkEl.hidden = state.connected && !!snap;
    if (!linkEl.hidden) setText(linkEl, state.connected ? t("waiting") : t("disconnected"));

    const alarmEl = $("#band-alarm");
    const em = alarmState();
    alarmEl.hidden = !["pending", "active", "acknowledged"].includes(em.shown);
    alarmEl.classList.toggle("pending", em.shown === "pending");
    if (em.shown === "pending") setText(alarmEl, t("band_pending", { s: em.left }));
    else if (em.shown === "active") setText(alarmEl, t("band_active"));
    else if (em.shown === "acknowledged") setText(alarmEl, t("band_acknowledged"));

    const noticeEl = $("#band-notice");
    noticeEl.hidden = !state.notice;
    if (state.notice) {
      noticeEl.className = `band-line ${state.notice.kind || ""}`;
      setText(noticeEl, state.notice.text);
    }
    const band = $("#band");
    const wasHidden = band.hidden;
    band.hidden = linkEl.hidden && alarmEl.hidden && noticeEl.hidden;
    for (const el of [linkEl, alarmEl, noticeEl]) if (!el.hidden) fitText(el, 0.7);
    return wasHidden !== band.hidden;
  }

  // Everything that moves with time alone: clocks, ages, countdowns, the ring.
  function tick() {
    const snap = state.snap;
    setText($("#ind-clock .txt"), new Intl.DateTimeFormat(locale(), { hour: "2-digit", minute: "2-digit", hour12: false }).format(new Date(agentNow())));
    $("#app").classList.toggle("offline", !state.connected);
    if (state.notice && performance.now() > state.notice.until) state.notice = null;
    const bandChanged = renderBand();
    if (!snap) return;

    renderSince();
    const call = snap.call;
    if (call) {
      const age = secondsSince(call.created);
      for (const el of $$("#call .age, #takeover .age")) setText(el, age === null ? "" : formatDuration(age));
    }
    renderSos();
    // The band took or gave back room: the card's texts fit a new box.
    if (bandChanged && call) {
      if (!$("#call").hidden) fitCall($("#call"));
      if (!$("#takeover").hidden) fitCall($("#takeover"));
    }
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

  // What the alarm control shows now: the snapshot's state, this screen's own
  // hold at once, and the cancel window counted down locally (at 0 the agent
  // has sent the alarm active: say so without waiting for its snapshot).
  function alarmState() {
    const em = (state.snap && state.snap.emergency) || { state: "none" };
    let shown = em.state || "none";
    let left = 0;
    if (shown === "pending") {
      const secs = typeof em.cancel_deadline_s === "number" ? em.cancel_deadline_s - (performance.now() - state.recvAt) / 1000 : 0;
      left = Math.max(0, Math.ceil(secs));
      if (secs <= 0) shown = "active";
    }
    return { em, shown, left };
  }

  function renderSos() {
    const { em, shown: alarmShown, left } = alarmState();
    const holdS = typeof em.hold_s === "number" && em.hold_s > 0 ? em.hold_s : 2;
    let shown = alarmShown;
    let progress = 0;
    let hint = t("sos_hint", { s: formatNumber(holdS, 0) });
    let label = t("sos");
    const now = performance.now();
    // This screen's own hold shows at once; a hold on the panel shows from the snapshot.
    let holdStart = state.holdStart;
    if (holdStart === null && shown === "holding" && em.since) {
      const held = secondsSince(em.since);
      if (held !== null) holdStart = now - held * 1000;
    }
    if (shown === "none" && holdStart !== null) shown = "holding";
    if (shown === "holding") {
      progress = holdStart === null ? 0 : Math.min(1, (now - holdStart) / 1000 / holdS);
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
      const key = `${label}|${hint}|${state.lang}`;
      if (b.dataset.fitted !== key && b.offsetParent !== null) {
        b.dataset.fitted = key;
        fitBox($(".sos-text", b), [$(".sos-label", b), $(".sos-hint", b)], 0.6);
      }
    }
    if (shown === "holding" && !state.ringFrame) {
      state.ringFrame = requestAnimationFrame(() => {
        state.ringFrame = null;
        renderSos();
      });
    }
  }

  function renderNotice(notice) {
    if (!notice || !notice.text) {
      state.lastNoticeKey = null;
      return;
    }
    const key = JSON.stringify(notice);
    if (key === state.lastNoticeKey) return; // already shown for this one
    state.lastNoticeKey = key;
    let text = notice.text;
    if (notice.kind === "cancelled") {
      // Which call, and the dispatcher's reason as they wrote it.
      text = t("notice_cancelled");
      if (notice.subject) text += t("notice_subject", { s: notice.subject });
      if (notice.reason) text += ` – ${t("notice_reason", { r: notice.reason })}`;
    }
    showNotice(text, notice.kind);
  }

  function showNotice(text, kind) {
    state.notice = { text, kind, until: performance.now() + NOTICE_MS };
    if (renderBand() && state.snap && state.snap.call) render();
  }

  // ----------------------------------------------------------------- sound

  function updateAlert(call, snap) {
    const a = state.alert;
    const key = call && snap.sound ? `${call.id}|${call.priority}` : null;
    if (key === a.key) return;
    stopAlert();
    a.key = key;
    if (!key) return;
    const audio = $("#alert-audio");
    audio.src = `/sounds/p${call.priority}.wav`;
    audio.loop = call.priority <= 2; // P1, P2 until acknowledged; P3 three times
    audio.volume = state.theme === "night" ? 0.7 : 1.0;
    a.audio = audio;
    a.plays = 0;
    playAlert();
  }

  function playAlert() {
    const a = state.alert;
    if (!a.audio) return;
    a.audio.play().then(
      () => setBlocked(false),
      (err) => {
        if (err && err.name === "NotAllowedError") setBlocked(true);
      }
    );
  }

  function setBlocked(blocked) {
    state.alert.blocked = blocked;
    const hint = $("#takeover .sound-hint");
    hint.hidden = !blocked;
    setText(hint, t("sound_blocked"));
  }

  function stopAlert() {
    const a = state.alert;
    if (a.audio) {
      a.audio.pause();
      a.audio.removeAttribute("src");
      a.audio.load();
    }
    a.audio = null;
    a.key = null;
    setBlocked(false);
  }

  $("#alert-audio").addEventListener("ended", () => {
    const a = state.alert;
    a.plays += 1;
    if (a.audio && a.plays < 3) playAlert();
  });

  // ---------------------------------------------------------------- input

  async function postInput(name, action) {
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

  function inputFailed(el, err) {
    flash(el, "failed");
    showNotice(err && err.status === 400 ? t("not_available") : t("send_failed"), "refused");
  }

  async function tap(el) {
    return tapInput(el.dataset.input, el);
  }

  async function tapInput(name, el) {
    try {
      await postInput(name, "press");
      await postInput(name, "release");
      flash(el, "sent");
    } catch (err) {
      inputFailed(el, err);
    }
  }

  // A lost release would leave the agent thinking the button is still held.
  async function release(name, el) {
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

  document.addEventListener("click", (ev) => {
    const el = ev.target.closest("button");
    if (!el) return;
    if (el.id === "btn-lang") {
      const cfg = state.snap && state.snap.lang === "ar" ? "ar" : "fr";
      savePref("lang", state.lang === "ar" ? "fr" : "ar", cfg);
      state.statusKey = state.controlsKey = null;
      render();
    } else if (el.id === "btn-theme") {
      const cfg = (state.snap && state.snap.theme) || "auto";
      const next = { auto: "night", night: "day", day: "auto" }[state.themeMode] || "auto";
      savePref("theme", next, cfg);
      render();
    } else if (el.dataset.input) {
      tap(el);
    }
  });

  function holdDown(ev) {
    const el = ev.target.closest("[data-hold]");
    if (!el || ev.button > 0 || state.holdPointer !== null) return;
    ev.preventDefault();
    const shown = alarmState().shown;
    if (shown === "pending" && allowed("emergency_cancel")) {
      // The control reads "cancel": a touch cancels (a finger still down from
      // the hold is not a new touch, so it cannot cancel by lifting).
      tapInput("emergency_cancel", el);
      return;
    }
    if (shown === "active" || shown === "acknowledged") return; // only dispatch ends it now
    state.holdPointer = { id: ev.pointerId, el };
    state.holdStart = performance.now();
    renderSos();
    postInput(el.dataset.hold, "press").catch((err) => inputFailed(el, err));
  }

  function holdUp(ev) {
    const hold = state.holdPointer;
    if (!hold || ev.pointerId !== hold.id) return;
    if (ev.type === "pointerleave" && ev.target !== hold.el) return;
    state.holdPointer = null;
    state.holdStart = null;
    renderSos();
    release(hold.el.dataset.hold, hold.el);
  }

  for (const b of $$("[data-hold]")) {
    b.addEventListener("pointerdown", holdDown);
    b.addEventListener("pointerup", holdUp);
    b.addEventListener("pointercancel", holdUp);
    b.addEventListener("pointerleave", holdUp);
    b.addEventListener("contextmenu", (ev) => ev.preventDefault());
  }
  document.addEventListener("contextmenu", (ev) => ev.preventDefault());
  // Any touch counts as the gesture a browser without the kiosk flag wants.
  document.addEventListener("pointerdown", () => {
    if (state.alert.blocked) playAlert();
  });

  // --------------------------------------------------------------- stream

  function onSnapshot(snap) {
    state.snap = snap;
    state.recvAt = performance.now();
    const agentTime = Date.parse(snap.now);
    if (!Number.isNaN(agentTime)) state.clockOffset = agentTime - Date.now();
    render();
  }

  function alive() {
    state.lastMsgAt = performance.now();
    if (!state.connected) {
      state.connected = true;
      tick();
    }
  }

  function lost() {
    if (state.connected) {
      state.connected = false;
      tick();
    }
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    if (state.es) state.es.close();
    const es = new EventSource("/api/events");
    state.es = es;
    es.addEventListener("hello", (ev) => {
      const hello = JSON.parse(ev.data);
      // The agent was upgraded under us: load the new page.
      if (state.version && hello.version !== state.version) location.reload();
      state.version = hello.version;
      state.pingS = hello.ping_s || 5;
      alive();
    });
    es.addEventListener("snapshot", (ev) => {
      alive();
      onSnapshot(JSON.parse(ev.data));
    });
    es.addEventListener("ping", alive);
    es.onerror = () => {
      lost();
      // CONNECTING: the browser retries by itself. CLOSED (e.g. 503): we do.
      if (es.readyState === EventSource.CLOSED) {
        state.reconnectTimer = setTimeout(connect, 1500);
      }
    };
  }

  // A stream can die without an error (a frozen agent, a half-open socket):
  // pings stop, so reopen it.
  function watchdog() {
    if (state.es && performance.now() - state.lastMsgAt > state.pingS * 2500) {
      lost();
      state.lastMsgAt = performance.now();
      connect();
    }
  }

  async function loadStrings() {
    for (;;) {
      try {
        const [fr, ar] = await Promise.all(
          ["fr", "ar"].map((l) => fetch(`/static/i18n/${l}.json`).then((r) => (r.ok ? r.json() : Promise.reject(r.status))))
        );
        state.i18n = { fr, ar };
        return;
      } catch (e) {
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  async function boot() {
    render();
    await loadStrings();
    render();
    state.lastMsgAt = performance.now();
    connect();
    setInterval(tick, 500);
    setInterval(watchdog, 1000);
    setInterval(applyLangTheme, 60000); // "auto" follows the sun
    // Text is fitted to measured sizes: measure again once the fonts are in, and on a resize.
    const refit = () => {
      for (const b of $$(".sos")) delete b.dataset.fitted;
      if (state.snap) render();
    };
    document.fonts.ready.then(refit);
    document.fonts.addEventListener("loadingdone", refit);
    window.addEventListener("resize", refit);
  }

  window.umps = { state, sunElevation, isNight, formatDistance, formatDuration, render };
  boot();
})();
