// @ts-check
/**
 * Snapshot undo/redo for every edit. Rather than instrumenting each kind of edit, the graph is
 * serialized at the end of each user gesture (pointerup, click, keyup, litegraph's afterChange)
 * and on the app's "changed" event; when the result differs from the last snapshot, the last
 * snapshot becomes an undo step (at most LIMIT are kept).
 * Snapshots are the serialized graph without the view (pan/zoom) and with nodes in id order, so
 * panning, selecting and bringing a node to the front are not edits. A gesture that changed the
 * graph without announcing it (a node drag, a new link, a delete) is announced here as "changed",
 * so autosave sees it too. serialize() costs ~15 ms for 500 nodes: fine per gesture, never per
 * pointermove.
 *
 * Service (app.undo): undo(), redo(), checkpoint() -> whether an edit was recorded, reset(),
 * canUndo(), canRedo(), depth() -> {past, future}. Event on the app: "history" {canUndo, canRedo}.
 */

const LIMIT = 100;

/** @param {any} app */
export function installUndo(app) {
  /** @type {string[]} */ const past = [];
  /** @type {string[]} */ const future = [];
  let current = "";
  let restoring = false;
  let pending = 0;

  const snapshot = () => {
    const data = app.graph.serialize({ sortNodes: true });
    if (data.extra) delete data.extra.ds;
    return JSON.stringify(data);
  };

  const announce = () => {
    app.dispatchEvent(new CustomEvent("history", { detail: { canUndo: past.length > 0, canRedo: future.length > 0 } }));
  };

  /** Record an undo step if the graph changed since the last snapshot. */
  const checkpoint = () => {
    if (restoring) return false;
    const now = snapshot();
    if (!current) {
      current = now;
      return false;
    }
    if (now === current) return false;
    past.push(current);
    if (past.length > LIMIT) past.shift();
    current = now;
    future.length = 0;
    announce();
    return true;
  };

  /** @param {string} state */
  const restore = (state) => {
    const { ds } = app.canvas;
    const view = { offset: [ds.offset[0], ds.offset[1]], scale: ds.scale };
    restoring = true;
    try {
      app.graph.configure(JSON.parse(state));
    } finally {
      restoring = false;
    }
    ds.offset = view.offset;
    ds.scale = view.scale;
    app.canvas.setDirty(true, true);
    // Loading can normalise details (sizes, slot fields); compare future edits with what is here now.
    current = snapshot();
    announce();
    app.markChanged(); // autosave the restored state; the checkpoint it triggers finds no change
  };

  const undo = () => {
    const previous = past.pop();
    if (previous === undefined) return false;
    future.push(current);
    restore(previous);
    return true;
  };

  const redo = () => {
    const next = future.pop();
    if (next === undefined) return false;
    past.push(current);
    restore(next);
    return true;
  };

  const reset = () => {
    past.length = 0;
    future.length = 0;
    current = snapshot();
    announce();
    // The first frame may still grow nodes to fit their widgets; that is not an edit.
    requestAnimationFrame(() => requestAnimationFrame(() => {
      if (!past.length && !future.length && !restoring) current = snapshot();
    }));
  };

  /** After a gesture: record it, and announce edits litegraph made without telling the app. */
  const afterGesture = () => {
    window.clearTimeout(pending);
    // Runs after the gesture's own handlers (click follows pointerup in the same task).
    pending = window.setTimeout(() => {
      if (checkpoint()) app.markChanged();
    }, 0);
  };

  app.addEventListener("changed", () => checkpoint());
  app.addEventListener("graph-loaded", () => reset());
  app.graph.events.addEventListener("configured", () => {
    if (!restoring) reset();
  });
  window.addEventListener("pointerup", afterGesture, true);
  window.addEventListener("click", afterGesture, true);
  window.addEventListener("keyup", (event) => {
    const target = /** @type {HTMLElement | null} */ (event.target);
    // Typing in a field changes nothing until it is committed: Enter in a one-line field (the
    // search box, litegraph's value prompt); the prompt textarea announces its own edits.
    if (target?.tagName === "TEXTAREA" || target?.tagName === "SELECT") return;
    if (target?.tagName === "INPUT" && event.key !== "Enter") return;
    afterGesture();
  }, true);
  // litegraph's own end-of-change signal (search box picks, menu adds, paste, delete); chained so
  // that other modules can use the hook too.
  const previousAfterChange = app.graph.onAfterChange;
  app.graph.onAfterChange = function (/** @type {any[]} */ ...args) {
    previousAfterChange?.apply(this, args);
    if (!restoring) afterGesture();
  };

  app.undo = {
    undo,
    redo,
    checkpoint,
    reset,
    canUndo: () => past.length > 0,
    canRedo: () => future.length > 0,
    depth: () => ({ past: past.length, future: future.length }),
  };
  announce();
  return app.undo;
}
