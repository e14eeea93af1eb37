// @ts-check
/**
 * Bootstrap: one graph, one canvas, the server's node types, then each feature module.
 *
 * The app object is the only shared state. Each module's `install(app)` adds its service to it
 * (see the `FlowmillApp` fields) and talks to the others through it and its events, never through
 * module-level variables. `window.app` exposes it to the browser tests (frontend.md §9.2).
 */
import { LGraph, LGraphCanvas, LiteGraph } from "../vendor/litegraph/litegraph.es.js";
import { Api } from "./api.js";
import { installExecution } from "./execution.js";
import { installDragDrop } from "./dragdrop.js";
import { installMenu } from "./menu.js";
import { registerNodeTypes } from "./nodes.js";
import { applyLitegraphPatches } from "./patches/litegraph_patches.js";
import { applyTextNotMarkupPatches } from "./patches/text_not_markup.js";
import { installCanvasHints } from "./ui/canvas_hints.js";
import { installDialogs } from "./ui/dialogs.js";
import { installQueuePanel } from "./ui/queue_panel.js";
import { installToolbar } from "./ui/toolbar.js";
import { installUndo } from "./undo.js";
import { installWorkflowIO } from "./workflow_io.js";

/**
 * App events (dispatched on the app, an EventTarget):
 *   "graph-loaded"  {name}       a workflow replaced the graph (open, drop, template, undo excluded)
 *   "changed"       {}           the user edited the graph (undo checkpoints, autosave)
 *   "queued"        {promptId, number}
 */
export class FlowmillApp extends EventTarget {
  constructor() {
    super();
    this.LiteGraph = LiteGraph;
    this.api = new Api();
    this.graph = new LGraph();
    const element = /** @type {HTMLCanvasElement} */ (document.getElementById("graph-canvas"));
    this.canvas = new LGraphCanvas(element, this.graph);
    /** @type {Record<string, any>} the server's /object_info */
    this.nodeDefs = {};
    this.ready = false;
    // Services, set by the modules' install functions:
    /** @type {any} dialogs.js: toast(message, kind), showError(title, detail), clearError() */
    this.ui = null;
    /** @type {any} undo.js: undo(), redo(), checkpoint(), reset() */
    this.undo = null;
    /** @type {any} workflow_io.js: load(workflow, {name}), serialize(), save(), exportApi(), openFile(file), restore() */
    this.workflow = null;
    /** @type {any} execution.js: queue(batchCount), interrupt(), cancel(promptId), clearState() */
    this.execution = null;
    /** @type {any} nodes.js: afterQueued(graph) applies seed controls; convertWidgetToInput(...) etc. */
    this.nodes = null;
  }

  /** Announce an edit made outside litegraph's own input handling. */
  markChanged() {
    this.dispatchEvent(new CustomEvent("changed", { detail: {} }));
  }

  fitCanvas() {
    const holder = /** @type {HTMLElement} */ (this.canvas.canvas.parentElement);
    this.canvas.resize(holder.clientWidth, holder.clientHeight);
  }

  async start() {
    applyLitegraphPatches(this);
    applyTextNotMarkupPatches(this);
    installDialogs(this);
    this.nodeDefs = await this.api.objectInfo();
    this.nodes = registerNodeTypes(this);
    installMenu(this);
    installUndo(this);
    installWorkflowIO(this);
    installExecution(this);
    installToolbar(this);
    installQueuePanel(this);
    installDragDrop(this);
    installCanvasHints(this);
    this.fitCanvas();
    new ResizeObserver(() => this.fitCanvas()).observe(/** @type {Element} */ (this.canvas.canvas.parentElement));
    this.api.connect();
    await this.nodes.coreTypesLoaded; // so a restored workflow's missing types are named by kind
    await this.workflow.restore(); // the autosaved workflow, else the server's default workflow
    this.ready = true;
  }
}

const app = new FlowmillApp();
// @ts-ignore: the test bridge and the developer console
window.app = app;
app.start().catch((error) => {
  console.error(error);
  app.ui?.showError("Flowmill could not start", String(error?.stack || error));
});
