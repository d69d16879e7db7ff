// The page's own strings (agent/adapters/web/i18n/<lang>.json) and the
// formats of numbers, durations and distances in the screen's language.
// Status labels come from the agent (configurable per fleet); the page's own
// names only stand in when the screen shows another language than the
// configured one and the agent sent labels for that one alone.

let tables = { fr: {}, ar: {} };
let lang = "fr";

export function setLang(next) {
  lang = next;
}

export function currentLang() {
  return lang;
}

export async function loadStrings() {
  for (;;) {
    try {
      const [fr, ar] = await Promise.all(
        ["fr", "ar"].map((l) => fetch(`/static/i18n/${l}.json`).then((r) => (r.ok ? r.json() : Promise.reject(r.status))))
      );
      tables = { fr, ar };
      return;
    } catch (e) {
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

export function t(key, vars) {
  const table = tables[lang] || {};
  let s = table[key] ?? tables.fr[key] ?? key;
  // Values are isolated (FSI..PDI) so a French name in an Arabic sentence,
  // or the reverse, keeps its own direction.
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, `\u2068${v}\u2069`);
  return s;
}

export function locale() {
  // Maghreb Arabic writes Latin digits; keep them in both languages.
  return lang === "ar" ? "ar-MA-u-nu-latn" : "fr-FR";
}

export function formatNumber(value, digits) {
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(value);
}

export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} ${t("unit_s")}`;
  if (s < 600) return `${Math.floor(s / 60)} ${t("unit_min")} ${String(s % 60).padStart(2, "0")} ${t("unit_s")}`;
  if (s < 3600) return `${Math.floor(s / 60)} ${t("unit_min")}`;
  if (s < 86400) return `${Math.floor(s / 3600)} ${t("unit_h")} ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}`;
  // Days: a call days old reads as days, never as thousands of hours.
  return `${Math.floor(s / 86400)} ${t("unit_d")} ${String(Math.floor((s % 86400) / 3600)).padStart(2, "0")} ${t("unit_h")}`;
}

export function formatDistance(m) {
  if (m < 1000) return `${Math.round(m / 10) * 10} ${t("unit_m")}`;
  if (m < 10000) return `${formatNumber(m / 1000, 1)} ${t("unit_km")}`;
  return `${formatNumber(m / 1000, 0)} ${t("unit_km")}`;
}

export function formatClock(ms) {
  return new Intl.DateTimeFormat(locale(), { hour: "2-digit", minute: "2-digit", hour12: false }).format(new Date(ms));
}

// Labels come from the agent in the snapshot's language, either flat
// {code: label} or per language {fr: {...}, ar: {...}}.
export function statusLabel(snap, code) {
  snap = snap || {};
  const labels = snap.status_labels || {};
  const perLang = labels[lang];
  if (perLang && typeof perLang === "object" && perLang[code]) return perLang[code];
  const own = (tables[lang] || {})[`status_${code}`];
  if (typeof labels[code] === "string" && (snap.lang === lang || !own)) return labels[code];
  return own || labels[code] || code;
}
