// @ts-check
/**
 * Running the workflow: queue it (with a batch count), interrupt or cancel, and turn the server's
 * websocket messages into what the canvas shows (run_display.js draws it) and the error panel says.
 *
 * app.execution = { queue(batchCount), interrupt(), cancel(promptId), clearState(), display, log }.
 * `log` is a short record of what reached the canvas (executing, progress, previews, outputs,
 * errors), kept for the browser tests and for debugging from the console.
 */
import { ApiError } from "./api.js";
import { ERROR_ROOM, RunDisplay, topLevelId } from "./run_display.js";
import { visibleCanvasArea } from "./workflow_io.js";

const LOG_LIMIT = 2000;

/** @param {any} app */
export function installExecution(app) {
  app.execution = new Execution(app);
}

/**
 * @typedef {{type: string, message: string, details?: string, extra_info?: {input_name?: string}}} RequestError
 * @typedef {{errors: RequestError[], class_type?: string}} NodeError
 * @typedef {{nodeId?: string, label: string, message: string, detail?: string}} ErrorEntry
 */

class Execution {
  /** @param {any} app */
  constructor(app) {
    this.app = app;
    this.display = new RunDisplay(app);
    /** @type {Array<Record<string, any>>} */
    this.log = [];
    /** @type {string | null} the prompt whose events are arriving */
    this.runningPromptId = null;
    // Queue requests run one after another: each serializes the graph after the previous one's
    // seed change, so two quick clicks never queue the same seed twice.
    /** @type {Promise<unknown>} */
    this.queueChain = Promise.resolve();
    /** Whether the error panel holds a refused queue's errors (the next accepted queue hides it). */
    this.panelShowsRefusal = false;
    this.#listen();
  }

  /**
   * Queue the current workflow `batchCount` times, one prompt per item with its own seed change
   * (control_after_generate runs after each). Stops at the first refusal.
   * @param {number} [batchCount]
   * @returns {Promise<Array<{promptId: string, number: number}>>} the prompts queued
   */
  queue(batchCount = 1) {
    const count = Math.max(1, Math.floor(Number(batchCount) || 1));
    const run = this.queueChain.then(() => this.#queueBatch(count));
    this.queueChain = run.catch(() => undefined);
    return run;
  }

  /** @param {number} count */
  async #queueBatch(count) {
    const app = this.app;
    /** @type {Array<{promptId: string, number: number}>} */
    const queued = [];
    for (let i = 0; i < count; i++) {
      const workflow = app.workflow.serialize();
      let reply;
      try {
        reply = await app.api.queuePrompt(workflow);
      } catch (error) {
        this.#queueRefused(error, queued.length, count);
        return queued;
      }
      if (queued.length === 0) {
        // The graph was accepted: the last refusal's marks are stale now. Only those: the
        // websocket may have reported this prompt's run (and its error) before this reply landed.
        this.display.clearErrors("validation");
        if (this.panelShowsRefusal) app.ui.clearError();
        this.panelShowsRefusal = false;
      }
      const promptId = String(reply.prompt_id);
      queued.push({ promptId, number: reply.number });
      if (reply.node_errors && Object.keys(reply.node_errors).length) {
        // Accepted, but some outputs will not run (ComfyUI queues the outputs that validate).
        this.#showNodeErrors("Some outputs failed validation and will not run", reply.node_errors);
      }
      app.nodes?.afterQueued?.(app.graph);
      app.canvas.setDirty(true, false);
      this.#record({ type: "queued", promptId, number: reply.number });
      app.dispatchEvent(new CustomEvent("queued", { detail: { promptId, number: reply.number } }));
    }
    return queued;
  }

  /** @param {unknown} error @param {number} done @param {number} count */
  #queueRefused(error, done, count) {
    const app = this.app;
    const skipped = count - done > 1 ? ` (${count - done} prompts not queued)` : "";
    if (error instanceof ApiError && error.status === 400 && error.body && typeof error.body === "object") {
      const body = error.body;
      const nodeErrors = body.node_errors || {};
      this.display.clearErrors();
      this.panelShowsRefusal = true;
      if (Object.keys(nodeErrors).length) {
        this.#showNodeErrors(`${body.error?.message || "Prompt failed validation"}${skipped}`, nodeErrors);
      } else {
        const detail = [body.error?.message, body.error?.details].filter(Boolean).join(": ");
        app.ui.showError(`The prompt was not queued${skipped}`, detail || error.message);
        this.#record({ type: "validation", nodes: [] });
      }
      return;
    }
    const reason = error instanceof Error ? error.message : String(error);
    app.ui.toast(`Could not queue the workflow: ${reason}`, "error");
    this.#record({ type: "queue-failed", message: reason });
  }

  /**
   * Outline each node named by a validation reply, mark its inputs, and list them in the panel.
   * @param {string} title @param {Record<string, NodeError>} nodeErrors
   */
  #showNodeErrors(title, nodeErrors) {
    /** @type {ErrorEntry[]} */
    const entries = [];
    for (const [id, nodeError] of Object.entries(nodeErrors)) {
      const key = topLevelId(id);
      if (key == null) continue;
      const errors = nodeError.errors || [];
      const inputs = errors.map((item) => item.extra_info?.input_name).filter((name) => typeof name === "string");
      const lines = errors.map((item) => errorLine(item, nodeError.class_type));
      const message = lines.join("\n") || "invalid node";
      this.display.setError(key, message, "validation", /** @type {string[]} */ (inputs));
      entries.push({ nodeId: key, label: this.#nodeLabel(key, nodeError.class_type), message });
    }
    this.app.ui.showError(title, entries);
    this.panelShowsRefusal = true;
    this.#keepInView(entries.map((entry) => entry.nodeId));
    this.#record({ type: "validation", nodes: entries.map((entry) => entry.nodeId) });
  }

  /**
   * Pan so that the failing nodes (with the error text under them) are not hidden under the error
   * panel or outside the visible canvas: into the larger free part of the view, above or right of
   * the panel, zooming out only when a node is too big for it. A view that shows them is kept.
   * @param {Array<string | undefined>} keys
   */
  #keepInView(keys) {
    const { app } = this;
    const nodes = keys.map((key) => this.display.nodeOf(key ?? null)).filter(Boolean);
    if (!nodes.length) return;
    const { ds } = app.canvas;
    const area = visibleCanvasArea(app);
    const canvasBox = app.canvas.canvas.getBoundingClientRect();
    const panelElement = document.getElementById("error-panel");
    const panel = panelElement && !panelElement.hidden ? panelElement.getBoundingClientRect() : null;
    const covered = panel ? { left: panel.left - canvasBox.left, top: panel.top - canvasBox.top,
                              right: panel.right - canvasBox.left, bottom: panel.bottom - canvasBox.top } : null;
    const title = app.LiteGraph.NODE_TITLE_HEIGHT;
    /** The node, its title and its error text, in graph units. @param {any} node */
    const graphBox = (node) => [node.pos[0], node.pos[1] - title, node.size[0], node.size[1] + title + ERROR_ROOM];
    /** @param {number[]} box */
    const onScreen = (box) => {
      const [left, top] = ds.convertOffsetToCanvas([box[0], box[1]]);
      return { left, top, right: left + box[2] * ds.scale, bottom: top + box[3] * ds.scale };
    };
    /** @param {{left: number, top: number, right: number, bottom: number}} a @param {typeof a} b */
    const overlaps = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
    const view = { left: area.left, top: area.top, right: area.left + area.width, bottom: area.top + area.height };
    const hidden = nodes.find((node) => {
      const box = onScreen(graphBox(node));
      const outside = box.left < view.left || box.top < view.top || box.right > view.right || box.bottom > view.bottom;
      return outside || (covered != null && overlaps(box, covered));
    });
    if (!hidden) return;
    // The free part of the view: above the panel or right of it, whichever is larger.
    let free = view;
    if (covered) {
      const above = { ...view, bottom: Math.max(view.top, covered.top) };
      const right = { ...view, left: Math.min(view.right, covered.right) };
      const size = (/** @type {typeof view} */ r) => Math.max(0, r.right - r.left) * Math.max(0, r.bottom - r.top);
      free = size(above) >= size(right) ? above : right;
    }
    const [x, y, width, height] = graphBox(hidden);
    const margin = 16;
    const room = [free.right - free.left - 2 * margin, free.bottom - free.top - 2 * margin];
    if (room[0] <= 0 || room[1] <= 0) return;
    ds.scale = Math.max(ds.min_scale ?? 0.1, Math.min(ds.scale, room[0] / width, room[1] / height));
    ds.offset = [(free.left + free.right) / 2 / ds.scale - (x + width / 2),
                 (free.top + free.bottom) / 2 / ds.scale - (y + height / 2)];
    app.canvas.setDirty(true, true);
    this.#record({ type: "revealed", node: String(hidden.id) });
  }

  /** @param {string} key @param {string | undefined} type */
  #nodeLabel(key, type) {
    const node = this.display.nodeOf(key);
    const name = node?.title || type || "node";
    return `${name} (#${key})`;
  }

  /** Stop the running prompt. */
  async interrupt() {
    try {
      await this.app.api.interrupt();
      this.#record({ type: "interrupt-requested" });
    } catch (error) {
      this.app.ui.toast(`Could not interrupt: ${errorText(error)}`, "error");
    }
  }

  /**
   * Remove a pending prompt, or interrupt it if it is running.
   * @param {string} promptId
   * @returns {Promise<boolean>} whether the server cancelled something
   */
  async cancel(promptId) {
    try {
      const reply = await this.app.api.cancel(promptId);
      this.#record({ type: "cancel-requested", promptId, cancelled: !!reply?.cancelled });
      return !!reply?.cancelled;
    } catch (error) {
      this.app.ui.toast(`Could not cancel: ${errorText(error)}`, "error");
      return false;
    }
  }

  /** Forget everything the canvas shows about runs (a new workflow replaced the graph). */
  clearState() {
    this.display.reset();
    this.runningPromptId = null;
  }

  /** @param {Record<string, any>} entry */
  #record(entry) {
    this.log.push({ ...entry, time: performance.now() });
    if (this.log.length > LOG_LIMIT) this.log.splice(0, this.log.length - LOG_LIMIT);
  }

  // -- websocket messages --------------------------------------------------------------------

  #listen() {
    const { api } = this.app;
    const display = this.display;
    /** @param {string} type @param {(detail: any) => void} handler */
    const on = (type, handler) => api.addEventListener(type, (/** @type {any} */ event) => handler(event.detail || {}));

    on("execution_start", (detail) => {
      this.runningPromptId = detail.prompt_id ?? null;
      display.clearRun();
      this.app.ui.clearError();
      this.panelShowsRefusal = false;
      this.#record({ type: "execution_start", promptId: detail.prompt_id });
    });
    on("execution_cached", (detail) => {
      const keys = (detail.nodes || []).map(topLevelId).filter((/** @type {any} */ key) => key != null);
      display.setCached(keys);
      this.#record({ type: "cached", nodes: keys, promptId: detail.prompt_id });
    });
    on("executing", (detail) => {
      const key = topLevelId(detail.display_node ?? detail.node);
      display.setExecuting(key);
      const node = display.nodeOf(key);
      // What the canvas will draw: the node's own stroke style says whether it is outlined.
      const highlighted = !!node?.strokeStyles?.executing?.call(node);
      this.#record({ type: "executing", node: key, promptId: detail.prompt_id, highlighted });
    });
    on("progress", (detail) => {
      const key = topLevelId(detail.node);
      if (key == null) return;
      display.setProgress(key, Number(detail.value), Number(detail.max));
      this.#record({ type: "progress", node: key, value: detail.value, max: detail.max,
                     nodeProgress: display.nodeOf(key)?.progress ?? null });
    });
    on("preview", async (detail) => {
      // Type-1 frames carry no node id: they belong to the node running now.
      const key = topLevelId(detail.nodeId) ?? display.executingId;
      if (key == null || !detail.blob) return;
      if (await display.setPreview(key, detail.blob)) {
        const image = display.states.get(key)?.preview?.image;
        this.#record({ type: "preview", node: key, width: image?.naturalWidth ?? 0 });
      }
    });
    on("executed", (detail) => {
      const key = topLevelId(detail.display_node ?? detail.node);
      // Notes a node sends about its run (e.g. SamplerFlowTurbo without a refiner) become toasts.
      const notes = detail.output?.text;
      if (Array.isArray(notes)) {
        for (const note of notes) if (typeof note === "string") this.app.ui.toast(note, "note");
      }
      const images = detail.output?.images;
      if (key == null || !Array.isArray(images)) return;
      const urls = images.filter((image) => image && typeof image.filename === "string")
        .map((image) => this.app.api.viewUrl(image));
      display.setOutputs(key, urls);
      this.#record({ type: "executed", node: key, images: urls.length });
    });
    on("execution_success", (detail) => {
      display.setExecuting(null);
      this.runningPromptId = null;
      this.#record({ type: "execution_success", promptId: detail.prompt_id });
    });
    on("execution_error", (detail) => {
      display.setExecuting(null);
      this.runningPromptId = null;
      const key = topLevelId(detail.node_id);
      const kind = detail.exception_type ? `${detail.exception_type}: ` : "";
      const message = `${kind}${detail.exception_message || "the node failed"}`;
      const traceback = Array.isArray(detail.traceback) ? detail.traceback.join("") : detail.traceback;
      if (key != null) display.setError(key, message, "run");
      this.panelShowsRefusal = false;
      this.app.ui.showError("The run failed", [{
        nodeId: key ?? undefined,
        label: key != null ? this.#nodeLabel(key, detail.node_type) : "Prompt",
        message, detail: traceback || undefined,
      }]);
      if (key != null) this.#keepInView([key]);
      this.#record({ type: "execution_error", node: key, message, promptId: detail.prompt_id });
    });
    on("execution_interrupted", (detail) => {
      display.setExecuting(null);
      this.runningPromptId = null;
      this.app.ui.toast("The run was interrupted", "info");
      this.#record({ type: "execution_interrupted", promptId: detail.prompt_id });
    });
    on("connected", (detail) => {
      if (!detail.reconnected) return;
      // Whatever ran before the drop may have died with the server; the server re-sends the
      // node that is still running, if any, right after this.
      display.setExecuting(null);
      this.runningPromptId = null;
      this.app.ui.toast("Reconnected to the server", "ok");
      this.#record({ type: "reconnected" });
    });
    this.app.addEventListener("graph-loaded", () => this.clearState());
  }
}

/**
 * One validation error as a line for a person. ComfyUI's `details` often just repeats the input
 * name the message already gives; a node's own check ("Custom validation failed for node" +
 * "<type> - <what is wrong>") is shown as what is wrong, the part that helps.
 * @param {RequestError} item @param {string | undefined} classType
 */
function errorLine(item, classType) {
  const prefix = classType ? `${classType} - ` : "";
  if (item.type === "custom_validation_failed" && item.details) {
    return item.details.startsWith(prefix) ? item.details.slice(prefix.length) : item.details;
  }
  return item.details && !item.message.includes(item.details) ? `${item.message}: ${item.details}` : item.message;
}

/** @param {unknown} error */
function errorText(error) {
  return error instanceof Error ? error.message : String(error);
}
