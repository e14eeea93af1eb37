// @ts-check
/**
 * What the canvas shows a newcomer beyond the graph: a hint on an empty canvas ("Double-click to
 * add a node, or open a template"), and none of litegraph's debug overlay (its frame time, node
 * counts and FPS in the corner, on by default) unless asked for with `app.canvas.show_info = true`.
 *
 * The hint is a DOM element over the canvas, shown while the graph has no nodes. It is checked
 * after each frame litegraph draws (every edit, load, undo or clear redraws), which costs one
 * comparison per frame and needs no hook in each way a graph can change.
 */

/** @param {any} app */
export function installCanvasHints(app) {
  const { canvas } = app;
  canvas.show_info = false;
  const holder = canvas.canvas.parentElement;
  if (!holder) return;
  const hint = document.createElement("div");
  hint.className = "app-empty-hint";
  hint.id = "empty-canvas-hint";
  const lead = document.createElement("strong");
  lead.textContent = "This workflow is empty.";
  hint.append(lead, document.createElement("br"),
    "Double-click to add a node, or open a template from the Templates menu.");
  hint.hidden = true;
  holder.append(hint);
  const drawn = canvas.onDrawOverlay;
  canvas.onDrawOverlay = function (/** @type {CanvasRenderingContext2D} */ ctx) {
    drawn?.call(this, ctx);
    const graph = canvas.graph || app.graph; // the one shown: a subgraph while one is open
    // Not before the saved or default workflow is back: an empty graph then is only "not yet".
    const restored = app.workflow?.restored !== false;
    const empty = restored && !graph.nodes.length && !(graph.groups ?? graph._groups ?? []).length;
    if (hint.hidden === empty) hint.hidden = !empty;
  };
  canvas.setDirty(true, true);
}
