// @ts-check
/**
 * How the app tells the user things: short toasts in #toasts, and the #error-panel for errors
 * that need reading (validation and run errors, with one clickable entry per failing node).
 *
 * app.ui = { toast(message, kind), showError(title, detail), clearError() }.
 * Server text only ever goes into textContent: messages can hold anything.
 */

/**
 * How long a toast stays, by kind. Errors and a node's notes about its run (a sentence saying
 * the run was degraded, sent as the run ends) stay longer so they can be read.
 */
const TOAST_MS = { info: 3500, ok: 3500, note: 9000, error: 9000 };
const MAX_TOASTS = 5;

/**
 * One line of the error panel. With a nodeId, the label is a button that shows the node.
 * @typedef {{nodeId?: string | number, label: string, message: string, detail?: string}} ErrorEntry
 */

/** @param {any} app */
export function installDialogs(app) {
  const toasts = /** @type {HTMLElement} */ (document.getElementById("toasts"));
  const panel = /** @type {HTMLElement} */ (document.getElementById("error-panel"));
  app.ui = {
    /**
     * @param {string} message
     * @param {"info" | "ok" | "error"} [kind]
     */
    toast(message, kind = "info") {
      showToast(toasts, message, kind in TOAST_MS ? kind : "info");
    },
    /**
     * @param {string} title
     * @param {string | ErrorEntry[]} [detail]  text, or one entry per failing node
     */
    showError(title, detail) {
      renderError(app, panel, title, detail);
    },
    clearError() {
      panel.hidden = true;
      panel.replaceChildren();
    },
  };
}

/** @param {HTMLElement} container @param {string} message @param {string} kind */
function showToast(container, message, kind) {
  const toast = document.createElement("div");
  toast.className = `toast toast-${kind}`;
  toast.setAttribute("role", kind === "error" ? "alert" : "status");
  toast.textContent = message;
  toast.title = "Click to dismiss";
  const remove = () => toast.remove();
  toast.addEventListener("click", remove);
  setTimeout(remove, TOAST_MS[/** @type {keyof TOAST_MS} */ (kind)]);
  container.append(toast);
  while (container.children.length > MAX_TOASTS) container.firstElementChild?.remove();
}

/**
 * @param {any} app @param {HTMLElement} panel @param {string} title
 * @param {string | ErrorEntry[] | undefined} detail
 */
function renderError(app, panel, title, detail) {
  const header = document.createElement("header");
  const heading = document.createElement("strong");
  heading.textContent = title;
  const close = document.createElement("button");
  close.className = "error-close";
  close.type = "button";
  close.textContent = "×";
  close.title = "Dismiss";
  close.setAttribute("aria-label", "Dismiss");
  close.addEventListener("click", () => app.ui.clearError());
  header.append(heading, close);

  const body = [];
  if (Array.isArray(detail)) {
    const list = document.createElement("ul");
    list.className = "error-entries";
    for (const entry of detail) list.append(renderEntry(app, entry));
    body.push(list);
  } else if (detail) {
    const text = document.createElement("pre");
    text.className = "error-detail";
    text.textContent = detail;
    body.push(text);
  }
  panel.replaceChildren(header, ...body);
  panel.hidden = false;
}

/** @param {any} app @param {ErrorEntry} entry */
function renderEntry(app, entry) {
  const item = document.createElement("li");
  item.className = "error-entry";
  let label;
  if (entry.nodeId != null) {
    label = document.createElement("button");
    label.type = "button";
    label.className = "error-node";
    label.dataset.nodeId = String(entry.nodeId);
    label.title = "Show this node";
    label.addEventListener("click", () => showNode(app, String(entry.nodeId)));
  } else {
    label = document.createElement("span");
    label.className = "error-node";
  }
  label.textContent = entry.label;
  const message = document.createElement("div");
  message.className = "error-message";
  message.textContent = entry.message;
  item.append(label, message);
  if (entry.detail) {
    const more = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = "Details";
    const text = document.createElement("pre");
    text.textContent = entry.detail;
    more.append(summary, text);
    item.append(more);
  }
  return item;
}

/** Centre the canvas on a node and select it. @param {any} app @param {string} id */
function showNode(app, id) {
  const node = app.graph.getNodeById(/^\d+$/.test(id) ? Number(id) : id);
  if (!node) {
    app.ui.toast(`Node #${id} is no longer in the graph`, "info");
    return;
  }
  // By hand rather than LGraphCanvas.centerOnNode, which mixes device and CSS pixels.
  const { ds } = app.canvas;
  const box = app.canvas.canvas.getBoundingClientRect();
  const title = app.LiteGraph.NODE_TITLE_HEIGHT;
  ds.offset[0] = box.width / (2 * ds.scale) - (node.pos[0] + node.size[0] / 2);
  ds.offset[1] = box.height / (2 * ds.scale) - (node.pos[1] + (node.size[1] - title) / 2);
  app.canvas.selectNode(node);
  app.canvas.setDirty(true, true);
}
