// The agent's Server-Sent Events: "hello" (the asset version: a new one after
// an upgrade reloads the page), "snapshot", and "ping" every few seconds. If
// the stream drops, the page keeps the last snapshot on screen and says the
// agent is lost; EventSource retries by itself, and a refused (503) or silent
// stream is reopened by the watchdog here.

let es = null;
let version = null;
let pingS = 5;
let lastMsgAt = 0;
let connected = false;
let reconnectTimer = null;
let hooks = { snapshot: () => {}, connection: () => {} };

export function isConnected() {
  return connected;
}

function alive() {
  lastMsgAt = performance.now();
  if (!connected) {
    connected = true;
    hooks.connection(true);
  }
}

function lost() {
  if (connected) {
    connected = false;
    hooks.connection(false);
  }
}

function connect() {
  clearTimeout(reconnectTimer);
  if (es) es.close();
  const source = new EventSource("/api/events");
  es = source;
  source.addEventListener("hello", (ev) => {
    const hello = JSON.parse(ev.data);
    // The agent was upgraded under us: load the new page.
    if (version && hello.version !== version) location.reload();
    version = hello.version;
    pingS = hello.ping_s || 5;
    alive();
  });
  source.addEventListener("snapshot", (ev) => {
    alive();
    hooks.snapshot(JSON.parse(ev.data));
  });
  source.addEventListener("ping", alive);
  source.onerror = () => {
    lost();
    // CONNECTING: the browser retries by itself. CLOSED (e.g. 503): we do.
    if (source.readyState === EventSource.CLOSED) reconnectTimer = setTimeout(connect, 1500);
  };
}

// A stream can die without an error (a frozen agent, a half-open socket):
// pings stop, so reopen it.
function watchdog() {
  if (es && performance.now() - lastMsgAt > pingS * 2500) {
    lost();
    lastMsgAt = performance.now();
    connect();
  }
}

export function openStream({ snapshot, connection }) {
  hooks = { snapshot, connection };
  lastMsgAt = performance.now();
  connect();
  setInterval(watchdog, 1000);
}
