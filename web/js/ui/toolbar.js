// @ts-check
/**
 * The toolbar's run controls: Queue (with the batch count, also Ctrl+Enter), Interrupt, the
 * queue-panel toggle with the queue size, and the connection indicator.
 *
 * The file buttons (New, Open, Save, ...) belong to workflow_io.js and undo.js.
 */

const MAX_BATCH = 100;
/** After this long without a connection, "reconnecting…" becomes "disconnected" (it still retries). */
const DISCONNECTED_AFTER_MS = 8000;
const PANEL_KEY = "flowmill.queuePanelHidden";
const CONNECTION_STATES = ["connecting", "connected", "reconnecting", "disconnected"];

/** @param {any} app */
export function installToolbar(app) {
  const byId = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
  const batch = /** @type {HTMLInputElement} */ (byId("batch-count"));
  const interruptButton = byId("interrupt-button");

  const batchCount = () => {
    const value = Math.min(MAX_BATCH, Math.max(1, Math.floor(Number(batch.value) || 1)));
    batch.value = String(value);
    return value;
  };
  const queue = () => app.execution.queue(batchCount());

  byId("queue-button").addEventListener("click", queue);
  interruptButton.addEventListener("click", () => app.execution.interrupt());
  // Capture phase: the canvas handles keys too, and must not swallow this one.
  window.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey) || event.altKey) return;
    if (isTyping(event.target)) return;
    event.preventDefault();
    if (!event.repeat) queue();
  }, true);

  installPanelToggle(byId("panel-button"), byId("queue-panel"));
  installConnection(app, byId("connection"));

  const queueSize = byId("queue-size");
  app.api.addEventListener("status", (/** @type {any} */ event) => {
    const remaining = event.detail?.status?.exec_info?.queue_remaining;
    if (typeof remaining === "number") queueSize.textContent = String(remaining);
  });
  // The Interrupt button looks armed only while something runs.
  const setRunning = (/** @type {boolean} */ running) => interruptButton.classList.toggle("running", running);
  app.api.addEventListener("execution_start", () => setRunning(true));
  for (const type of ["execution_success", "execution_error", "execution_interrupted", "disconnected"]) {
    app.api.addEventListener(type, () => setRunning(false));
  }
  app.api.addEventListener("executing", (/** @type {any} */ event) => setRunning(event.detail?.node != null));
}

/** True while the user types into a field, where shortcuts must not fire. @param {EventTarget | null} target */
function isTyping(target) {
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

/** @param {HTMLElement} button @param {HTMLElement} panel */
function installPanelToggle(button, panel) {
  const apply = (/** @type {boolean} */ hidden) => {
    panel.classList.toggle("hidden", hidden);
    button.setAttribute("aria-expanded", String(!hidden));
    button.classList.toggle("active", !hidden);
  };
  apply(localStorage.getItem(PANEL_KEY) === "1");
  button.addEventListener("click", () => {
    const hidden = !panel.classList.contains("hidden");
    localStorage.setItem(PANEL_KEY, hidden ? "1" : "0");
    apply(hidden);
  });
}

/** @param {any} app @param {HTMLElement} indicator */
function installConnection(app, indicator) {
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let giveUpTimer;
  const show = (/** @type {string} */ state, /** @type {string} */ text) => {
    indicator.classList.remove(...CONNECTION_STATES);
    indicator.classList.add(state);
    indicator.textContent = text;
    indicator.dataset.state = state;
  };
  app.api.addEventListener("connected", () => {
    clearTimeout(giveUpTimer);
    giveUpTimer = undefined;
    show("connected", "connected");
  });
  app.api.addEventListener("disconnected", () => {
    // api.js fires this for every failed attempt; only the first starts the clock.
    if (giveUpTimer !== undefined || indicator.dataset.state === "disconnected") return;
    show("reconnecting", "reconnecting…");
    giveUpTimer = setTimeout(() => show("disconnected", "disconnected"), DISCONNECTED_AFTER_MS);
  });
}
