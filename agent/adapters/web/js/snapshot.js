// The newest snapshot from the agent, and the agent's clock.
//
// The snapshot is the whole of what the page shows and what it may post (the
// contract is in agent/adapters/web_ui.py): the page holds no rule of its own.
// Between snapshots only time moves; the page follows the agent's clock
// (offset from the snapshot's "now"), not the screen's.

let snap = null;
let recvAt = 0; // performance.now() when snap arrived
let clockOffset = 0; // agent time - local time, ms

export function current() {
  return snap;
}

export function receive(next) {
  snap = next;
  recvAt = performance.now();
  const agentTime = Date.parse(next.now);
  if (!Number.isNaN(agentTime)) clockOffset = agentTime - Date.now();
}

// Seconds since the current snapshot arrived (for counting its countdowns down).
export function secondsSinceSnapshot() {
  return (performance.now() - recvAt) / 1000;
}

export function agentNow() {
  return Date.now() + clockOffset;
}

export function secondsSince(iso) {
  const at = Date.parse(iso);
  return Number.isNaN(at) ? null : (agentNow() - at) / 1000;
}

// May the page post this input now? Only the snapshot says.
export function allowed(name) {
  const inputs = snap && snap.inputs;
  return Array.isArray(inputs) && inputs.includes(name);
}
