// Inputs that take a second touch: the snapshot's "confirm" ({input: seconds})
// names them. A first touch arms the button (it then asks to confirm); a second
// touch within the time posts the input; otherwise the button goes back by
// itself. The arming is for one call only: another call on the screen starts
// again. Why: a decline goes to dispatch at once and cannot be taken back,
// and in a moving car a touch lands where it was not meant.

let pending = null; // {name, key, until}

export function needsConfirm(snap, name) {
  const confirm = snap && snap.confirm;
  return !!confirm && typeof confirm[name] === "number" && confirm[name] > 0;
}

export function armed(name, key) {
  return !!pending && pending.name === name && pending.key === key && performance.now() < pending.until;
}

// A touch on a button that needs confirming: true when this touch confirms it (post it now).
export function touch(snap, name, key, onExpire) {
  if (armed(name, key)) {
    pending = null;
    return true;
  }
  const seconds = snap.confirm[name];
  pending = { name, key, until: performance.now() + seconds * 1000 };
  setTimeout(onExpire, seconds * 1000 + 50);
  return false;
}
