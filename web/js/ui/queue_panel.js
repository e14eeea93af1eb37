// @ts-check
/**
 * The queue and history panel (#queue-panel): the running and pending prompts with a cancel
 * button each, and the finished prompts, newest first, with thumbnails of their images, the start
 * of their prompt text, their status and run time, a delete button, and a click that loads the
 * prompt's workflow back onto the canvas.
 *
 * Lists are rebuilt from GET /api/queue and GET /api/history: on `status` messages, when a prompt
 * is done, after a reconnect, and when the panel is shown. History is only fetched while the panel is
 * visible (entries carry whole workflows); a hidden panel just remembers that it is stale.
 */

const HISTORY_ITEMS = 40;
const THUMBNAILS_PER_ENTRY = 4;
/** How much of the prompt text an entry shows (CSS cuts it to one line; the tooltip has all of it). */
const PROMPT_TEXT_MAX = 200;

/**
 * ComfyUI's queue item: [number, prompt_id, prompt, extra_data, outputs_to_execute].
 * @typedef {[number, string, Record<string, any>, Record<string, any>, string[]]} QueueItem
 * @typedef {{prompt: QueueItem, outputs: Record<string, any>,
 *            status?: {status_str?: string, completed?: boolean, messages?: Array<[string, any]>}}} HistoryEntry
 */

/** @param {any} app */
export function installQueuePanel(app) {
  new QueuePanel(app);
}

class QueuePanel {
  /** @param {any} app */
  constructor(app) {
    this.app = app;
    this.panel = /** @type {HTMLElement} */ (document.getElementById("queue-panel"));
    this.queueList = /** @type {HTMLElement} */ (document.getElementById("queue-list"));
    this.historyList = /** @type {HTMLElement} */ (document.getElementById("history-list"));
    this.historyStale = true;
    this.refreshQueue = latestWins(() => this.#loadQueue());
    this.refreshHistory = latestWins(() => this.#loadHistory());

    const { api } = app;
    /** @type {number | null} */
    this.lastRemaining = null;
    api.addEventListener("status", (/** @type {any} */ event) => {
      this.refreshQueue();
      // Fewer prompts left: one finished, perhaps another client's (its messages never come here).
      const remaining = event.detail?.status?.exec_info?.queue_remaining;
      if (typeof remaining !== "number") return;
      if (this.lastRemaining != null && remaining < this.lastRemaining) this.#historyChanged();
      this.lastRemaining = remaining;
    });
    // A prompt's end (success, error or interrupt) is followed by `executing {node: null}`, which
    // the server sends only after it wrote the history entry: execution_success itself comes first.
    api.addEventListener("executing", (/** @type {any} */ event) => {
      if (event.detail?.node != null) return;
      this.refreshQueue();
      this.#historyChanged();
    });
    api.addEventListener("connected", () => {
      this.refreshQueue();
      this.#historyChanged();
    });
    // The toolbar toggles the "hidden" class; catch up when the panel comes back.
    new MutationObserver(() => {
      if (this.#visible() && this.historyStale) this.refreshHistory();
    }).observe(this.panel, { attributes: true, attributeFilter: ["class"] });
  }

  #visible() {
    return !this.panel.classList.contains("hidden");
  }

  #historyChanged() {
    this.historyStale = true;
    if (this.#visible()) this.refreshHistory();
  }

  async #loadQueue() {
    let queue;
    try {
      queue = await this.app.api.getQueue();
    } catch {
      return; // the server is away; the next `connected` refreshes
    }
    const running = sortByNumber(queue.queue_running || []);
    const pending = sortByNumber(queue.queue_pending || []);
    const items = [
      ...running.map((item) => this.#queueItem(item, true)),
      ...pending.map((item) => this.#queueItem(item, false)),
    ];
    if (!items.length) items.push(emptyNote("Nothing queued"));
    this.queueList.replaceChildren(...items);
  }

  /** @param {QueueItem} item @param {boolean} running */
  #queueItem(item, running) {
    const [number, promptId, prompt] = item;
    const row = document.createElement("li");
    row.className = `queue-item ${running ? "running" : "pending"}`;
    row.dataset.promptId = promptId;
    const label = document.createElement("span");
    label.className = "queue-label";
    const nodes = prompt && typeof prompt === "object" ? Object.keys(prompt).length : 0;
    label.textContent = `#${number} · ${running ? "running" : "pending"} · ${nodes} nodes`;
    label.title = promptId;
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "queue-cancel";
    cancel.textContent = running ? "Interrupt" : "Cancel";
    cancel.title = running ? "Stop this prompt" : "Remove this prompt from the queue";
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      await this.app.execution.cancel(promptId);
      this.refreshQueue();
    });
    row.append(label, cancel);
    return row;
  }

  async #loadHistory() {
    this.historyStale = false;
    /** @type {Record<string, HistoryEntry>} */
    let history;
    try {
      history = await this.app.api.getHistory(HISTORY_ITEMS);
    } catch {
      this.historyStale = true;
      return;
    }
    // The server lists oldest first; the panel shows the newest first.
    const entries = Object.entries(history || {}).reverse();
    const items = entries.map(([promptId, entry]) => this.#historyItem(promptId, entry));
    if (!items.length) items.push(emptyNote("No finished prompts"));
    this.historyList.replaceChildren(...items);
  }

  /** @param {string} promptId @param {HistoryEntry} entry */
  #historyItem(promptId, entry) {
    const [number, , prompt, extraData] = entry.prompt || [];
    const status = historyStatus(entry);
    const workflow = extraData?.extra_pnginfo?.workflow;
    const row = document.createElement("li");
    row.className = `history-item status-${status}${workflow ? "" : " no-workflow"}`;
    row.dataset.promptId = promptId;
    row.title = workflow ? "Load this prompt's workflow onto the canvas" : "This prompt has no saved workflow";

    const thumbnails = document.createElement("div");
    thumbnails.className = "history-thumbnails";
    const images = outputImages(entry.outputs);
    for (const image of images.slice(0, THUMBNAILS_PER_ENTRY)) {
      const thumbnail = document.createElement("img");
      thumbnail.className = "history-thumbnail";
      thumbnail.loading = "lazy";
      thumbnail.decoding = "async";
      thumbnail.alt = image.filename;
      thumbnail.src = this.app.api.viewUrl(image);
      thumbnails.append(thumbnail);
    }
    if (images.length > THUMBNAILS_PER_ENTRY) {
      const more = document.createElement("span");
      more.className = "history-more";
      more.textContent = `+${images.length - THUMBNAILS_PER_ENTRY}`;
      thumbnails.append(more);
    }

    const meta = document.createElement("div");
    meta.className = "history-meta";
    const badge = document.createElement("span");
    badge.className = "history-status";
    badge.textContent = status;
    meta.append(badge);
    // Each part stays whole ("12.3 s" never breaks); the row wraps between parts if it must.
    for (const [kind, text] of timingParts(number, extraData, entry)) {
      const part = document.createElement("span");
      part.className = `history-time history-${kind}`;
      part.textContent = text;
      meta.append(part);
    }

    const text = promptText(prompt);
    const summary = document.createElement("div");
    summary.className = text ? "history-prompt" : "history-prompt history-no-text";
    summary.textContent = text ? text.slice(0, PROMPT_TEXT_MAX) : "(no prompt text)";
    if (text) summary.title = text;

    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "history-delete";
    remove.textContent = "Delete";
    remove.title = "Delete from history";
    remove.addEventListener("click", async (event) => {
      event.stopPropagation();
      remove.disabled = true;
      try {
        await this.app.api.deleteHistory([promptId]);
      } catch (error) {
        this.app.ui.toast(`Could not delete: ${error instanceof Error ? error.message : error}`, "error");
      }
      this.refreshHistory();
    });

    row.append(thumbnails, summary, meta, remove);
    row.addEventListener("click", () => this.#open(number, workflow));
    return row;
  }

  /** @param {number} number @param {any} workflow */
  async #open(number, workflow) {
    if (!workflow) {
      this.app.ui.toast("This prompt was queued without its workflow, so it cannot be opened", "info");
      return;
    }
    try {
      await this.app.workflow.load(workflow, { name: `prompt #${number}` });
      this.app.ui.toast(`Opened the workflow of prompt #${number}`, "ok");
    } catch (error) {
      this.app.ui.toast(`Could not open that workflow: ${error instanceof Error ? error.message : error}`, "error");
    }
  }
}

/**
 * Run `load` now, or once more after the run in flight ends: never two at a time, never a lost update.
 * @param {() => Promise<void>} load
 */
function latestWins(load) {
  let running = false;
  let again = false;
  const run = async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        await load();
      } while (again);
    } finally {
      running = false;
    }
  };
  return run;
}

/** @param {QueueItem[]} items */
function sortByNumber(items) {
  return [...items].sort((a, b) => Number(a[0]) - Number(b[0]));
}

/** @param {string} text */
function emptyNote(text) {
  const note = document.createElement("li");
  note.className = "empty-note";
  note.textContent = text;
  return note;
}

/** success, error or interrupted (ComfyUI reports an interrupted prompt as an error). @param {HistoryEntry} entry */
function historyStatus(entry) {
  const messages = entry.status?.messages || [];
  if (messages.some(([type]) => type === "execution_interrupted")) return "interrupted";
  if (entry.status?.status_str === "success" || entry.status?.completed) return "success";
  return entry.status ? "error" : "unknown";
}

/** @param {Record<string, any> | undefined} outputs */
function outputImages(outputs) {
  /** @type {Array<{filename: string, subfolder?: string, type?: string}>} */
  const images = [];
  for (const output of Object.values(outputs || {})) {
    for (const image of output?.images || []) {
      if (image && typeof image.filename === "string") images.push(image);
    }
  }
  return images;
}

/**
 * [["number", "#12"], ["clock", "14:03"], ["duration", "1.4 s"]] from the queue number,
 * create_time and the status timestamps (parts that are unknown are left out).
 * @param {number} number @param {any} extraData @param {HistoryEntry} entry
 * @returns {Array<[string, string]>}
 */
function timingParts(number, extraData, entry) {
  /** @type {Array<[string, string]>} */
  const parts = [["number", `#${number}`]];
  if (typeof extraData?.create_time === "number") {
    const clock = new Date(extraData.create_time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    parts.push(["clock", clock]);
  }
  const messages = entry.status?.messages || [];
  const stamp = (/** @type {string} */ type) => messages.find(([name]) => name === type)?.[1]?.timestamp;
  const started = stamp("execution_start");
  const ended = stamp("execution_success") ?? stamp("execution_error") ?? stamp("execution_interrupted");
  if (typeof started === "number" && typeof ended === "number" && ended >= started) {
    parts.push(["duration", formatDuration(ended - started)]);
  }
  return parts;
}

/** 850 -> "0.9 s", 75_000 -> "1 min 15 s" @param {number} ms */
export function formatDuration(ms) {
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.round(ms / 1000);
  return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
}

/**
 * The prompt's own words: the text of its text encoders (the first non-empty one, which in the
 * usual graphs is the positive prompt), else any other non-empty text input. "" when it has none.
 * @param {Record<string, any> | undefined} prompt  the API prompt
 */
export function promptText(prompt) {
  if (!prompt || typeof prompt !== "object") return "";
  const nodes = Object.entries(prompt).sort(([a], [b]) => Number(a) - Number(b) || a.localeCompare(b))
    .map(([, node]) => node).filter((node) => node && typeof node === "object");
  /** @param {any} node */
  const textOf = (node) => Object.values(node.inputs || {}).find((value) => typeof value === "string" && value.trim());
  const encoder = nodes.find((node) => /TextEncode/i.test(String(node.class_type)) && textOf(node));
  const found = encoder ? textOf(encoder)
    : nodes.map((node) => node.inputs?.text).find((value) => typeof value === "string" && value.trim());
  return typeof found === "string" ? found.replace(/\s+/g, " ").trim() : "";
}
