// @ts-check
/**
 * Workflow files in and out of the canvas: load, save, export to the API format, open files,
 * and the autosave that lets the current workflow survive a page reload.
 *
 * `installWorkflowIO(app)` sets `app.workflow` (a WorkflowIO) and wires the file buttons (New,
 * Open, Save, Export API), Ctrl+S / Ctrl+Shift+S / Ctrl+O and the templates menu. Every way a
 * workflow reaches the canvas (open, drop, paste, template, restore) goes through `load()`, which
 * replaces the graph with one `graph.configure` call, names node types the server lacks, fits the
 * whole graph into the part of the canvas the queue panel leaves visible (a file's saved view was
 * made for another screen, and a node off to the side is a run that seems to do nothing), and
 * announces "graph-loaded". Saved files are ComfyUI's canvas format (LiteGraph v0.4), so they open
 * in ComfyUI too; "Export API" asks the server to convert, the same code /prompt runs.
 */
import { MAX_FIT_SCALE, apiPromptToWorkflow } from "./api_layout.js";
import { MAX_MEDIA_BYTES, mediaKind, readMediaWorkflow } from "./media_metadata.js";
import { parseLenientJson, readPngWorkflow } from "./pnginfo.js";
import { askName } from "./ui/name_dialog.js";
import { installTemplatesMenu } from "./ui/templates.js";

const AUTOSAVE_KEY = "flowmill.autosave";
const AUTOSAVE_DELAY_MS = 1000;
const UNTITLED = "Untitled";
const DEFAULT_NAME = "default";
// Characters that are not allowed (or not portable) in a downloaded file's name.
const UNSAFE_NAME_CHARACTERS = /[\u0000-\u001f\u007f/\\:*?"<>|]+/g;
const MAX_NAME_LENGTH = 120;
/** Screen pixels kept free around a fitted graph. */
const FIT_PADDING = 24;
/** Graph units above a node's title where litegraph draws its badges (18 px high, 2 px gaps). */
const BADGE_ROOM = 22;

/**
 * A canvas (UI-format) workflow: a `nodes` list plus graph bookkeeping, as engine/convert.py's
 * is_ui_workflow decides. @param {any} data
 */
export function isCanvasWorkflow(data) {
  return !!data && typeof data === "object" && Array.isArray(data.nodes)
    && ["links", "last_node_id", "state", "version"].some((key) => key in data);
}

/** An API-format prompt: a non-empty object whose every value names a class_type. @param {any} data */
export function isApiPrompt(data) {
  if (!data || typeof data !== "object" || Array.isArray(data)) return false;
  const values = Object.values(data);
  return values.length > 0 && values.every((node) => node && typeof node === "object" && typeof node.class_type === "string");
}

/**
 * The workflow inside whatever JSON a user may hold: a canvas file, an API prompt, or a saved
 * POST /prompt body ({prompt, extra_data: {extra_pnginfo: {workflow}}}). Null when none.
 * @param {any} data
 */
export function workflowIn(data) {
  if (isCanvasWorkflow(data) || isApiPrompt(data)) return data;
  const embedded = data?.extra_data?.extra_pnginfo?.workflow;
  if (isCanvasWorkflow(embedded)) return embedded;
  if (isCanvasWorkflow(data?.prompt) || isApiPrompt(data?.prompt)) return data.prompt;
  return null;
}

/** What each kind of file that can carry a workflow is called in messages. */
const KIND_NAMES = { png: "PNG", webp: "WebP image", matroska: "WebM/MKV video", isobmff: "MP4/MOV video" };

/** "renders/cat.v2.json" -> "cat.v2" @param {string} fileName */
export function fileStem(fileName) {
  const base = fileName.split(/[/\\]/).pop() || "";
  return base.replace(/\.(json|png|webp|webm|mkv|mp4|m4v|mov)$/i, "") || UNTITLED;
}

/** A name that is safe as a download's file name (without extension). @param {string} name */
export function cleanName(name) {
  const cleaned = name.replace(UNSAFE_NAME_CHARACTERS, "_").replace(/\.json$/i, "").trim()
    .replace(/^\.+/, "").slice(0, MAX_NAME_LENGTH).trim();
  return cleaned || UNTITLED;
}

/**
 * Hand the browser a file to download.
 * @param {string} fileName
 * @param {string} text
 */
function download(fileName, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = fileName;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The download has started from the URL; revoking at once can cancel it in some browsers.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** @param {EventTarget | null} target */
function isTyping(target) {
  const element = /** @type {HTMLElement | null} */ (target);
  return !!element && (["INPUT", "TEXTAREA", "SELECT"].includes(element.tagName) || element.isContentEditable);
}

/** @param {unknown} error */
function messageOf(error) {
  const body = /** @type {any} */ (error)?.body;
  return body?.error?.message || (error instanceof Error ? error.message : String(error));
}

export class WorkflowIO {
  /** @param {any} app */
  constructor(app) {
    this.app = app;
    /** The current workflow's name: the download's file name and the toolbar label. */
    this.name = UNTITLED;
    /** True once the user chose the name (saved, or opened their own file): Save stops asking. */
    this.named = false;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.autosaveTimer = null;
    /** Autosave only once restore() has put the user's workflow back, never over it with a blank graph. */
    this.restored = false;
  }

  /** The canvas workflow as a plain JSON object (LiteGraph v0.4, ComfyUI's file format). */
  serialize() {
    return JSON.parse(JSON.stringify(this.app.graph.serialize()));
  }

  /**
   * Replace the graph with a workflow (canvas format, or an API prompt laid out as a graph).
   * Throws for data that is not a workflow; the previous graph is kept when configuring fails.
   * @param {any} data
   * @param {{name?: string, named?: boolean}} [options]
   * @returns {{missing: string[]}}  node types the server does not have
   */
  load(data, { name = UNTITLED, named = false } = {}) {
    const { app } = this;
    const source = workflowIn(data);
    if (!source) {
      throw new Error("not a workflow: expected a canvas workflow (nodes and links) or an API-format prompt "
        + "(a class_type per node)");
    }
    let workflow;
    let finish = null;
    if (isCanvasWorkflow(source)) {
      workflow = structuredClone(source); // configure keeps references into the data it is given
    } else {
      ({ workflow, finish } = apiPromptToWorkflow(source, app.nodeDefs));
    }
    const missing = this.#missingTypes(workflow);
    const previous = this.app.graph.serialize();
    try {
      app.graph.configure(workflow);
      const area = visibleCanvasArea(app);
      finish?.(app.graph, app.LiteGraph.NODE_TITLE_HEIGHT,
               { width: area.width - 2 * FIT_PADDING, height: area.height - 2 * FIT_PADDING });
    } catch (error) {
      app.graph.configure(previous);
      throw error;
    }
    this.fitToView();
    this.#markMissing(missing);
    this.#setName(name, named);
    app.ui?.clearError?.();
    if (missing.length) this.#reportMissing(missing);
    app.canvas.setDirty(true, true);
    app.dispatchEvent(new CustomEvent("graph-loaded", { detail: { name: this.name } }));
    this.scheduleAutosave();
    return { missing };
  }

  /** Start an empty workflow; undo can still bring the previous one back. */
  clear() {
    const { app } = this;
    app.graph.clear();
    app.canvas.ds.reset();
    this.#setName(UNTITLED, false);
    app.ui?.clearError?.();
    app.canvas.setDirty(true, true);
    app.markChanged();
  }

  /**
   * Download the workflow as "<name>.json"; asks for a name the first time (or with `saveAs`).
   * @param {{saveAs?: boolean}} [options]
   * @returns {Promise<boolean>}  false when the user cancelled
   */
  async save({ saveAs = false } = {}) {
    if (!this.named || saveAs) {
      const answer = await askName({ title: "Save workflow", label: "Name", initial: this.name });
      if (answer === null) return false;
      this.#setName(cleanName(answer), true);
    }
    download(`${this.name}.json`, JSON.stringify(this.serialize(), null, 2));
    this.scheduleAutosave();
    return true;
  }

  /** Download the API-format prompt ("<name>_api.json"), converted by the server. */
  async exportApi() {
    try {
      const prompt = await this.app.api.convertToApi(this.serialize());
      download(`${this.name}_api.json`, JSON.stringify(prompt, null, 2));
      return true;
    } catch (error) {
      this.#showError("Cannot export the API format", messageOf(error));
      return false;
    }
  }

  /**
   * Open a workflow file: a .json (canvas or API format), or a PNG, WebP, WebM/MKV or MP4/MOV that
   * carries one, as Flowmill and ComfyUI save them (recognised by their first bytes, not their
   * names). Open, drop and paste all come here; errors are shown, not thrown.
   * @param {File} file
   * @returns {Promise<boolean>}
   */
  async openFile(file) {
    try {
      if (file.size > MAX_MEDIA_BYTES) {
        throw new Error(`the file is ${Math.round(file.size / 2 ** 20)} MiB; workflows are read from files up to `
          + `${MAX_MEDIA_BYTES / 2 ** 20} MiB`);
      }
      const bytes = new Uint8Array(await file.arrayBuffer());
      const kind = mediaKind(bytes);
      const data = kind === null ? this.#workflowFromJson(bytes) : await this.#workflowFromMedia(bytes, kind);
      // An image's or video's name is an output's name, not a workflow name the user chose: Save asks first.
      this.load(data, { name: fileStem(file.name), named: kind === null });
      this.app.ui?.toast?.(`Opened ${file.name}`, "ok");
      return true;
    } catch (error) {
      this.#showError(`Cannot open ${file.name}`, messageOf(error));
      return false;
    }
  }

  /** The autosaved workflow if there is one, else the server's default workflow. */
  async restore() {
    const saved = this.#readAutosave();
    let loaded = false;
    if (saved) {
      try {
        this.load(saved.workflow, { name: saved.name, named: saved.named });
        loaded = true;
      } catch (error) {
        console.warn("flowmill: the autosaved workflow could not be restored; opening the default", error);
      }
    }
    if (!loaded) {
      try {
        this.load(await this.app.api.defaultWorkflow(), { name: DEFAULT_NAME });
      } catch (error) {
        this.#setName(UNTITLED, false);
        this.#showError("The default workflow could not be opened", messageOf(error));
      }
    }
    this.restored = true;
  }

  /** Write the autosave about a second after the last change (edits come in bursts). */
  scheduleAutosave() {
    if (this.autosaveTimer !== null) clearTimeout(this.autosaveTimer);
    this.autosaveTimer = setTimeout(() => this.autosaveNow(), AUTOSAVE_DELAY_MS);
  }

  autosaveNow() {
    if (this.autosaveTimer !== null) clearTimeout(this.autosaveTimer);
    this.autosaveTimer = null;
    if (!this.restored) return;
    const record = { name: this.name, named: this.named, workflow: this.serialize(), savedAt: Date.now() };
    try {
      localStorage.setItem(AUTOSAVE_KEY, JSON.stringify(record));
    } catch (error) { // quota exceeded (a huge graph) or storage disabled: the session still works
      console.warn("flowmill: could not autosave the workflow", error);
    }
  }

  /** @returns {{name: string, named: boolean, workflow: any} | null} */
  #readAutosave() {
    try {
      const record = JSON.parse(localStorage.getItem(AUTOSAVE_KEY) || "null");
      if (record && workflowIn(record.workflow)) {
        return { name: cleanName(String(record.name || UNTITLED)), named: !!record.named, workflow: record.workflow };
      }
    } catch (error) {
      console.warn("flowmill: ignoring an unreadable autosave", error);
    }
    return null;
  }

  /**
   * The workflow (else the API prompt) an image or video carries.
   * @param {Uint8Array} bytes @param {keyof typeof KIND_NAMES} kind
   */
  async #workflowFromMedia(bytes, kind) {
    const { workflow, prompt } = kind === "png" ? await readPngWorkflow(bytes) : /** @type {any} */ (readMediaWorkflow(bytes));
    const found = workflowIn(workflow) || workflowIn(prompt);
    if (!found) {
      throw new Error(`this ${KIND_NAMES[kind]} carries no workflow: only files saved by Flowmill or ComfyUI have one `
        + "('workflow' or 'prompt' metadata)");
    }
    return found;
  }

  /** @param {Uint8Array} bytes */
  #workflowFromJson(bytes) {
    try {
      return parseLenientJson(new TextDecoder().decode(bytes));
    } catch (error) {
      throw new Error(`the file is not valid JSON (${messageOf(error)}); expected a workflow .json, or a PNG, `
        + "WebP, WebM or MP4 saved by Flowmill or ComfyUI");
    }
  }

  /**
   * Node types in a workflow that the server does not provide.
   * @param {any} workflow
   * @returns {string[]}
   */
  #missingTypes(workflow) {
    const { app } = this;
    if (typeof app.nodes?.missingTypes === "function") return app.nodes.missingTypes(workflow);
    const subgraphs = new Set((workflow.definitions?.subgraphs || []).map((subgraph) => subgraph.id));
    const types = new Set((workflow.nodes || []).map((node) => String(node.type)));
    return [...types].filter((type) => !subgraphs.has(type) && !app.LiteGraph.registered_node_types[type]);
  }

  /** @param {string[]} missing */
  #markMissing(missing) {
    if (!missing.length) return;
    const types = new Set(missing);
    for (const node of this.app.graph.nodes) {
      if (types.has(String(node.type))) node.has_errors = true; // litegraph outlines it in red
    }
  }

  /** The error panel names the missing types, with one entry per node (a click shows it). @param {string[]} missing */
  #reportMissing(missing) {
    const report = this.app.nodes?.missingReport?.(missing); // nodes.js tells core nodes from custom ones
    if (report) {
      this.#showError(report.title, report.entries);
      return;
    }
    const types = new Set(missing);
    const entries = this.app.graph.nodes.filter((node) => types.has(String(node.type))).map((node) => ({
      nodeId: node.id, label: `#${node.id} ${node.type}`,
      message: `This server has no ${node.type} node. It is kept as it is (outlined in red), so saving loses `
        + "nothing, but the workflow cannot run until a node pack provides it or the node is removed.",
    }));
    this.#showError(`Missing node types: ${missing.join(", ")}`, entries);
  }

  /** @param {string} title @param {string | object[]} detail  text, or dialogs.js error entries */
  #showError(title, detail) {
    if (this.app.ui?.showError) this.app.ui.showError(title, detail);
    else console.warn(`flowmill: ${title}`, detail);
  }

  /**
   * Zoom and pan so every node and group lies inside the visible canvas area (clear of the queue
   * panel), centred, at 1:1 at most. An empty graph gets the default view.
   */
  fitToView() {
    const { app } = this;
    const view = app.canvas.ds;
    const bounds = graphBounds(app.graph, app.canvas.ctx);
    view.reset();
    if (!bounds) return;
    const area = visibleCanvasArea(app);
    const [x, y, width, height] = bounds;
    const room = [Math.max(1, area.width - 2 * FIT_PADDING), Math.max(1, area.height - 2 * FIT_PADDING)];
    const fitted = Math.min(room[0] / width, room[1] / height, MAX_FIT_SCALE);
    // litegraph's own zoom limits; a graph too big for its smallest zoom is shown from its top left.
    const scale = Math.max(view.min_scale ?? 0.1, fitted);
    view.scale = scale;
    const left = area.left + Math.max(FIT_PADDING, (area.width - width * scale) / 2);
    const top = area.top + Math.max(FIT_PADDING, (area.height - height * scale) / 2);
    view.offset = [left / scale - x, top / scale - y];
  }

  /** @param {string} name @param {boolean} named */
  #setName(name, named) {
    this.name = cleanName(name);
    this.named = named;
    const label = document.getElementById("workflow-name");
    if (label) {
      label.textContent = this.name;
      label.title = `Current workflow: ${this.name}`;
    }
    document.title = `${this.name} - Flowmill`;
  }
}

/**
 * The part of the canvas a user can see, in canvas (CSS pixel) coordinates: the canvas element,
 * less whatever the queue panel covers and whatever lies outside the window.
 * @param {any} app
 * @returns {{left: number, top: number, width: number, height: number}}
 */
export function visibleCanvasArea(app) {
  const box = app.canvas.canvas.getBoundingClientRect();
  let right = Math.min(box.right, window.innerWidth);
  const bottom = Math.min(box.bottom, window.innerHeight);
  const panel = document.getElementById("queue-panel");
  if (panel && panel.offsetParent !== null) { // offsetParent is null while the panel is hidden
    const covered = panel.getBoundingClientRect();
    if (covered.width > 0 && covered.left < right && covered.right > box.left
        && covered.top < bottom && covered.bottom > box.top) right = Math.min(right, covered.left);
  }
  const left = Math.max(box.left, 0);
  const top = Math.max(box.top, 0);
  return { left: left - box.left, top: top - box.top,
           width: Math.max(0, right - left), height: Math.max(0, bottom - top) };
}

/**
 * [x, y, width, height] around every node (title bar and badges included) and group, in graph coordinates;
 * null for an empty graph. Measured now: litegraph's cached bounds are only updated when it draws.
 * @param {any} graph  @param {CanvasRenderingContext2D} ctx  measures collapsed titles
 * @returns {number[] | null}
 */
export function graphBounds(graph, ctx) {
  const boxes = [];
  for (const node of graph.nodes || []) {
    const box = [0, 0, 0, 0];
    node.measure(box, ctx);
    // litegraph draws badges (the "cached" mark) above the title bar: keep them in view too.
    boxes.push([box[0], box[1] - BADGE_ROOM, box[2], box[3] + BADGE_ROOM]);
  }
  for (const group of graph.groups || graph._groups || []) boxes.push([...group.pos, ...group.size]);
  if (!boxes.length) return null;
  const left = Math.min(...boxes.map((b) => b[0]));
  const top = Math.min(...boxes.map((b) => b[1]));
  const right = Math.max(...boxes.map((b) => b[0] + b[2]));
  const bottom = Math.max(...boxes.map((b) => b[1] + b[3]));
  return [left, top, Math.max(1, right - left), Math.max(1, bottom - top)];
}

/** The file buttons, the hidden file input and the Ctrl+S / Ctrl+O shortcuts. @param {WorkflowIO} io */
function wireButtons(io) {
  const fileInput = /** @type {HTMLInputElement} */ (document.getElementById("workflow-file"));
  const openChooser = () => {
    fileInput.value = ""; // choosing the same file again must still fire "change"
    fileInput.click();
  };
  document.getElementById("new-button")?.addEventListener("click", () => io.clear());
  document.getElementById("open-button")?.addEventListener("click", openChooser);
  document.getElementById("save-button")?.addEventListener("click", () => io.save());
  document.getElementById("export-api-button")?.addEventListener("click", () => io.exportApi());
  fileInput?.addEventListener("change", () => {
    const file = fileInput.files?.[0];
    if (file) io.openFile(file).finally(() => { fileInput.value = ""; });
  });
  document.addEventListener("keydown", (event) => {
    if (!(event.ctrlKey || event.metaKey) || event.altKey || isTyping(event.target)) return;
    const key = event.key.toLowerCase();
    if (key === "s") {
      event.preventDefault(); // the browser's "save page"
      io.save({ saveAs: event.shiftKey });
    } else if (key === "o" && !event.shiftKey) {
      event.preventDefault();
      openChooser();
    }
  });
}

/** @param {any} app */
export function installWorkflowIO(app) {
  const io = new WorkflowIO(app);
  app.workflow = io;
  wireButtons(io);
  installTemplatesMenu(app);
  for (const event of ["changed", "queued"]) app.addEventListener(event, () => io.scheduleAutosave());
  // A change made less than a second before a reload or a closed tab must not be lost.
  window.addEventListener("pagehide", () => io.autosaveNow());
  return io;
}
