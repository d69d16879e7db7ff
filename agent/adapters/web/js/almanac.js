// The solar almanac behind the "auto" theme: night when the sun is 3 degrees
// below the horizon at the unit's position. Pure functions, no page state.

// Solar elevation (degrees) by the usual low-precision almanac formulas:
// good to a fraction of a degree, plenty to choose a screen theme.
export function sunElevation(date, lat, lon) {
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
export function isNight(date, lat, lon) {
  if (typeof lat === "number" && typeof lon === "number") return sunElevation(date, lat, lon) < -3;
  const h = date.getHours();
  return h >= 19 || h < 7;
}
