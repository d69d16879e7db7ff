// This screen's own choices (language, theme), kept in localStorage. Nothing
// is posted: a preference is the screen's, not the unit's. A local choice
// holds while the configured value it overrode is unchanged; once a fleet
// admin configures something new, the old local choice is forgotten for good.

const PREFS_KEY = "umps.prefs";

function loadPrefs() {
  try {
    return JSON.parse(localStorage.getItem(PREFS_KEY)) || {};
  } catch (e) {
    return {};
  }
}

export function savePref(key, value, configured) {
  const prefs = loadPrefs();
  if (value === configured) delete prefs[key];
  else prefs[key] = { value, base: configured };
  try {
    localStorage.setItem(PREFS_KEY, JSON.stringify(prefs));
  } catch (e) {
    /* private mode or full: the choice lasts until reload */
  }
}

export function effective(key, configured) {
  const pref = loadPrefs()[key];
  if (!pref) return configured;
  if (pref.base === configured) return pref.value;
  savePref(key, configured, configured);
  return configured;
}
