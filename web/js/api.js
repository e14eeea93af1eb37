// @ts-check
/**
 * The server, seen from the page: JSON wrappers for the HTTP routes and one reconnecting
 * websocket whose messages are re-dispatched as DOM events on the Api object.
 *
 * Events (event.detail is the message's `data`, as comfyui-compat.md §10 lists them):
 *   status, execution_start, execution_cached, executing, progress, executed, execution_success,
 *   execution_error, execution_interrupted  - ComfyUI's text messages
 *   preview        - {nodeId, promptId, blob}: a binary preview frame (type 4 with metadata, or 1)
 *   connected      - first connection, or again after a drop ({reconnected: true})
 *   disconnected   - the socket closed; reconnect attempts follow with a growing delay
 */

const PREVIEW_IMAGE = 1;
const PREVIEW_IMAGE_WITH_METADATA = 4;
const IMAGE_TYPES = { 1: "image/jpeg", 2: "image/png" };
const RECONNECT_DELAYS_MS = [250, 500, 1000, 2000, 4000];

/** An HTTP reply that was not 2xx, with the server's JSON body when there is one. */
export class ApiError extends Error {
  /** @param {number} status @param {any} body @param {string} message */
  constructor(status, body, message) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export class Api extends EventTarget {
  /** @param {string} base  URL prefix of the server, "" for same-origin */
  constructor(base = "") {
    super();
    this.base = base;
    this.clientId = sessionStorage.getItem("flowmill.clientId") || crypto.randomUUID();
    sessionStorage.setItem("flowmill.clientId", this.clientId);
    /** @type {WebSocket | null} */
    this.socket = null;
    this.connectedOnce = false;
    this.attempt = 0;
  }

  /**
   * @param {string} path  e.g. "/api/queue"
   * @param {RequestInit & {json?: any}} [options]
   * @returns {Promise<any>}
   */
  async fetchJson(path, options = {}) {
    const { json, ...init } = options;
    if (json !== undefined) {
      init.method = init.method || "POST";
      init.headers = { "Content-Type": "application/json", ...(init.headers || {}) };
      init.body = JSON.stringify(json);
    }
    const response = await fetch(this.base + path, { credentials: "same-origin", ...init });
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = text;
    }
    if (!response.ok) {
      const reason = body?.error?.message || body?.error || (typeof body === "string" ? body : response.statusText);
      throw new ApiError(response.status, body, `${path}: ${response.status} ${reason}`);
    }
    return body;
  }

  objectInfo() { return this.fetchJson("/api/object_info"); }
  defaultWorkflow() { return this.fetchJson("/api/flowmill/default_workflow"); }
  templates() { return this.fetchJson("/api/flowmill/templates"); }
  /** @param {string} name */
  template(name) { return this.fetchJson(`/api/flowmill/templates/${encodeURIComponent(name)}`); }
  /** API-format prompt for a canvas workflow, converted by the server (the same code /prompt runs). */
  convertToApi(workflow) { return this.fetchJson("/api/flowmill/convert", { json: { workflow } }); }

  /**
   * Queue a canvas workflow: the server converts and validates it. A validation failure
   * rejects with an ApiError whose body holds {error, node_errors}.
   * @param {object} workflow  the canvas (UI-format) workflow
   * @param {{front?: boolean}} [options]
   */
  queuePrompt(workflow, options = {}) {
    return this.fetchJson("/api/prompt", {
      json: { prompt: workflow, client_id: this.clientId, front: !!options.front,
              extra_data: { extra_pnginfo: { workflow } } },
    });
  }

  getQueue() { return this.fetchJson("/api/queue"); }
  /** @param {number} maxItems */
  getHistory(maxItems = 64) { return this.fetchJson(`/api/history?max_items=${maxItems}`); }
  /** @param {string[]} promptIds */
  deleteQueued(promptIds) { return this.fetchJson("/api/queue", { json: { delete: promptIds } }); }
  /** @param {string[]} promptIds */
  deleteHistory(promptIds) { return this.fetchJson("/api/history", { json: { delete: promptIds } }); }
  clearHistory() { return this.fetchJson("/api/history", { json: { clear: true } }); }
  /** Stop the running prompt (ComfyUI's global interrupt). */
  interrupt() { return this.fetchJson("/api/interrupt", { json: {} }); }
  /** Remove a queued prompt, or interrupt it if it is the one running. @param {string} promptId */
  cancel(promptId) { return this.fetchJson(`/api/jobs/${encodeURIComponent(promptId)}/cancel`, { json: {} }); }

  /**
   * @param {File | Blob} file
   * @param {{overwrite?: boolean, subfolder?: string, name?: string}} [options]
   * @returns {Promise<{name: string, subfolder: string, type: string}>}
   */
  async uploadImage(file, options = {}) {
    const form = new FormData();
    form.append("image", file, options.name || /** @type {File} */ (file).name || "image.png");
    if (options.overwrite) form.append("overwrite", "true");
    if (options.subfolder) form.append("subfolder", options.subfolder);
    return this.fetchJson("/api/upload/image", { method: "POST", body: form });
  }

  /** URL of an output, input or temp image, as /view serves it. */
  viewUrl({ filename, subfolder = "", type = "output" }) {
    const query = new URLSearchParams({ filename, subfolder, type });
    return `${this.base}/api/view?${query}`;
  }

  /** Open the websocket; it reconnects by itself until `close()`. */
  connect() {
    const url = new URL(`${this.base || ""}/ws`, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("clientId", this.clientId);
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.addEventListener("open", () => {
      socket.send(JSON.stringify({ type: "feature_flags", data: { supports_preview_metadata: true } }));
      this.attempt = 0;
      this.dispatchEvent(new CustomEvent("connected", { detail: { reconnected: this.connectedOnce } }));
      this.connectedOnce = true;
    });
    socket.addEventListener("message", (event) => this.#onMessage(event.data));
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return; // closed on purpose, or already replaced
      this.dispatchEvent(new CustomEvent("disconnected"));
      const delay = RECONNECT_DELAYS_MS[Math.min(this.attempt++, RECONNECT_DELAYS_MS.length - 1)];
      setTimeout(() => { if (this.socket === socket) this.connect(); }, delay);
    });
  }

  close() {
    const socket = this.socket;
    this.socket = null;
    socket?.close();
  }

  /** @param {string | ArrayBuffer} data */
  #onMessage(data) {
    if (typeof data !== "string") {
      this.#onBinary(data);
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      console.warn("flowmill: ignoring a websocket message that is not JSON");
      return;
    }
    if (message && typeof message.type === "string") {
      if (message.type === "status" && message.data?.sid) this.clientId = message.data.sid;
      this.dispatchEvent(new CustomEvent(message.type, { detail: message.data ?? {} }));
    }
  }

  /** @param {ArrayBuffer} buffer */
  #onBinary(buffer) {
    const view = new DataView(buffer);
    const kind = view.getUint32(0);
    if (kind === PREVIEW_IMAGE_WITH_METADATA) {
      const length = view.getUint32(4);
      const metadata = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, length)));
      const blob = new Blob([buffer.slice(8 + length)], { type: metadata.image_type || "image/jpeg" });
      this.dispatchEvent(new CustomEvent("preview", {
        detail: { nodeId: String(metadata.node_id ?? ""), promptId: metadata.prompt_id, blob } }));
    } else if (kind === PREVIEW_IMAGE) {
      const type = IMAGE_TYPES[view.getUint32(4)] || "image/jpeg";
      this.dispatchEvent(new CustomEvent("preview", { detail: { nodeId: "", promptId: null,
        blob: new Blob([buffer.slice(8)], { type }) } }));
    }
  }
}
