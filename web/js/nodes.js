// @ts-check
/**
 * Node types for the canvas, built from the server's /object_info (app.nodeDefs): one LGraphNode
 * subclass per entry, with the display name as title, the category for the Add Node menu, typed
 * sockets for link-only inputs and for outputs, and one widget per widget input (schema_widgets.js,
 * seed.js, multiline.js, image_upload.js). Also the frontend-only nodes ComfyUI files contain
 * (Note, MarkdownNote, Reroute, and the legacy PrimitiveNode of widgets/primitive_node.js),
 * placeholders for node types the server lacks, and subgraph
 * instance types, so any workflow opens.
 *
 * Widget values are written twice: positionally in `widgets_values` (ComfyUI's format, which the
 * server's converter reads) and by name in `properties.widget_values`, which loading prefers, so a
 * file survives widgets being added to a node definition (frontend.md §8.4).
 *
 * A type the server lacks is either a ComfyUI core node Flowmill does not have yet or a custom
 * node that is not installed; the server's list of ComfyUI core types (GET
 * /api/flowmill/core_node_types) tells which, and placeholders and the missing-types report say so.
 *
 * Returns the `app.nodes` service: afterQueued(), missingTypes(workflow), missingReport(missing),
 * coreTypesLoaded (a promise), convertWidgetToInput(), convertInputToWidget(), toggleMode(). Must not
 * import the other app modules.
 */
import {
  LGraphBadge, LGraphCanvas, LGraphEventMode, LGraphNode, LiteGraph, SlotShape, SubgraphNode, TitleMode,
} from "../vendor/litegraph/litegraph.es.js";
import { conversionMenu, convertInputToWidget, convertWidgetToInput } from "./widgets/convert.js";
import { DomOverlay } from "./widgets/dom_widget.js";
import { ImageUploader, drawUploadPreview } from "./widgets/image_upload.js";
import { addMultilineWidget } from "./widgets/multiline.js";
import { registerPrimitiveNode } from "./widgets/primitive_node.js";
import { addSchemaWidget, inputSpecs, isWidgetInput, socketType } from "./widgets/schema_widgets.js";
import { CONTROL_VALUES, addControlWidget, applyControl, wantsControl } from "./widgets/seed.js";

/** properties key holding {widget name: value}. */
export const NAMED_VALUES = "widget_values";
const MUTED = LGraphEventMode.NEVER;
const BYPASSED = LGraphEventMode.BYPASS;
/** Text edits become one "changed" (undo step, autosave) after this much quiet. */
const TYPING_QUIET_MS = 400;
const MODE_LOOK = {
  [BYPASSED]: { color: "#6b3a78", bgcolor: "#3c2742", label: "bypassed" },
  [MUTED]: { color: "#2a2a2a", bgcolor: "#232323", label: "muted" },
};
const MISSING_LOOK = { color: "#a33", bgcolor: "#3b2222" };
const OUTPUT_NODE_COLOR = "#34503e";
const FRONTEND_CATEGORY = "utils";
/** Socket colours: links and sockets of one type share a colour; other types get a hashed hue. */
const TYPE_COLOURS = {
  MODEL: "#b39ddb", CLIP: "#ffd54f", VAE: "#ef7a7a", CONDITIONING: "#ffab40", LATENT: "#f48fb1",
  IMAGE: "#64b5f6", MASK: "#81c784", INT: "#8fbc8f", FLOAT: "#9ccc9c", STRING: "#a5d6a7",
  BOOLEAN: "#90caf9", COMBO: "#b0bec5", CONTROL_NET: "#4dd0a1", SAMPLER: "#e6a5a5", SIGMAS: "#c5e1a5",
  NOISE: "#bdbdbd", GUIDER: "#80deea", CLIP_VISION: "#a1887f", STYLE_MODEL: "#ce93d8",
  VELOCITY_REFINER: "#ffcc80", BOSS_COST: "#dce775",
};

/**
 * @typedef {object} Services
 * @property {any} app
 * @property {DomOverlay} overlay
 * @property {ImageUploader} uploader
 * @property {(delayMs?: number) => void} changedSoon
 * @property {import("./widgets/multiline.js").MultilineHooks} multiline
 */

/** @param {any} app */
export function registerNodeTypes(app) {
  const overlay = new DomOverlay(app.canvas);
  const changedSoon = changeNotifier(app);
  /** @type {Services} */
  const services = {
    app,
    overlay,
    uploader: new ImageUploader(app),
    changedSoon,
    multiline: {
      overlay,
      select: (node) => {
        if (!node.selected) app.canvas.selectNode(node);
        app.canvas.setDirty(true, false);
      },
      edited: (_widget, final) => changedSoon(final ? 0 : TYPING_QUIET_MS),
      wheel: (event) => app.canvas.processMouseWheel(event),
    },
  };
  const frontendTypes = [...registerFrontendNodes(services), registerPrimitiveNode(services)];
  for (const [type, def] of Object.entries(app.nodeDefs)) registerSchemaNode(services, type, def);
  colourSocketTypes(app.canvas, app.nodeDefs);
  // litegraph outlines a canvas-sized box at the graph origin, which reads as a stray frame.
  app.canvas.render_canvas_border = false;
  const known = () => new Set([...Object.keys(app.nodeDefs), ...frontendTypes]);
  const core = { types: /** @type {Set<string> | null} */ (null) };
  const coreTypesLoaded = loadCoreTypes(app).then((types) => { core.types = types; });
  const kindOf = (/** @type {string} */ type) => missingKind(type, core.types);
  watchConfigure(app, known, kindOf);
  return {
    afterQueued: () => applySeedControls(app),
    /** @param {any} workflow @returns {string[]} */
    missingTypes: (workflow) => missingTypes(workflow, known()),
    /** @param {string[]} missing @returns {{title: string, entries: object[]}} the error panel's report */
    missingReport: (missing) => missingReport(app, missing, kindOf),
    coreTypesLoaded,
    convertWidgetToInput,
    convertInputToWidget,
    toggleMode,
  };
}

/**
 * Coalesces change notifications into one app "changed" event. A change made while the pointer is
 * still down (dragging a number widget) is announced once, when the drag ends.
 * @param {any} app
 */
function changeNotifier(app) {
  let timer = 0;
  const flush = () => {
    timer = 0;
    if (app.canvas.pointer.isDown) {
      timer = window.setTimeout(flush, 50);
      return;
    }
    app.markChanged();
  };
  return (delayMs = 0) => {
    window.clearTimeout(timer);
    timer = window.setTimeout(flush, delayMs);
  };
}

/** Behaviour shared by every node type built from the schema. */
class SchemaNode extends LGraphNode {
  /** @type {Services} */ static services;
  /** @type {any} */ static nodeDef;
  /** @type {import("./widgets/schema_widgets.js").InputSpec[]} */ static specs = [];

  /** @param {string} [title] */
  constructor(title) {
    const ctor = /** @type {typeof SchemaNode} */ (new.target);
    super(title ?? ctor.title, ctor.type);
    this.properties = { "Node name for S&R": ctor.type };
    this.serialize_widgets = true;
    const extra = { width: 0, height: 0 };
    for (const spec of ctor.specs) {
      if (!isWidgetInput(spec)) {
        this.addInput(spec.name, socketType(spec), spec.optional ? { shape: SlotShape.HollowCircle } : undefined);
        continue;
      }
      const widget = addSchemaWidget(this, spec,
        (node, multilineSpec) => {
          extra.width = Math.max(extra.width, 400);
          extra.height = Math.max(extra.height, 100);
          return addMultilineWidget(node, multilineSpec, ctor.services.multiline);
        },
        (changed) => this.widgetChanged(changed));
      if (wantsControl(spec)) addControlWidget(this, widget, spec, (changed) => this.widgetChanged(changed));
      if (spec.options.image_upload) {
        ctor.services.uploader.attach(this, widget);
        extra.width = Math.max(extra.width, 315);
        extra.height = Math.max(extra.height, 240);
      }
      if (spec.options.defaultInput) convertWidgetToInput(this, spec.name);
    }
    addSchemaOutputs(this, ctor.nodeDef);
    const def = ctor.nodeDef;
    if (def.deprecated) this.badges.push(new LGraphBadge({ text: "deprecated", bgColor: "#7a2e2e" }));
    if (def.experimental) this.badges.push(new LGraphBadge({ text: "experimental", bgColor: "#2e4a7a" }));
    // What a widget holds when a file has no value for it (positional files can be short).
    for (const widget of this.widgets ?? []) widget.initialValue = widget.value;
    const size = this.computeSize();
    this.setSize([Math.max(size[0], extra.width), size[1] + extra.height]);
  }

  /** A widget's value changed through the user. @param {any} widget */
  widgetChanged(widget) {
    if (widget === this.imageCombo) this.#services.uploader.showChoice(this, widget.value);
    this.#services.changedSoon();
  }

  get #services() {
    return /** @type {typeof SchemaNode} */ (this.constructor).services;
  }

  /** @param {any} data  the serialized node, written in place */
  onSerialize(data) {
    data.properties = { ...(data.properties || {}), [NAMED_VALUES]: namedValues(this) };
  }

  /** @param {any} info  the serialized node being loaded */
  onConfigure(info) {
    const named = info.properties?.[NAMED_VALUES]
      ?? (info.widgets_values && !Array.isArray(info.widgets_values) ? info.widgets_values : null);
    if (named && typeof named === "object") {
      applyNamedValues(this, named);
    } else if (Array.isArray(info.widgets_values)) {
      applyPositionalValues(this, info.widgets_values);
    }
    delete this.properties[NAMED_VALUES];
    addMissingSlots(this, /** @type {typeof SchemaNode} */ (this.constructor));
    if (this.imageCombo) this.#services.uploader.showChoice(this, this.imageCombo.value);
    const minimum = this.computeSize();
    if (this.size[0] < minimum[0] || this.size[1] < minimum[1]) {
      this.setSize([Math.max(this.size[0], minimum[0]), Math.max(this.size[1], minimum[1])]);
    }
  }

  onRemoved() {
    for (const widget of this.widgets ?? []) widget.onRemove?.();
  }

  /** Double-clicking the title renames the node. @param {MouseEvent} event @param {any} _pos @param {any} canvas */
  onNodeTitleDblClick(event, _pos, canvas) {
    canvas.prompt("Title", this.title, (/** @type {string} */ title) => {
      if (!title || title === this.title) return;
      this.title = title;
      this.setDirtyCanvas(true, false);
      this.#services.changedSoon();
    }, event);
  }

  /**
   * Flowmill's entries, prepended to litegraph's node menu (whose list is tidied in place).
   * @param {any} canvas @param {any[]} options
   */
  getExtraMenuOptions(canvas, options) {
    tidyNodeMenu(options);
    const changed = () => this.#services.changedSoon();
    const targets = this.selected ? Object.values(canvas.selected_nodes) : [this];
    return [
      ...conversionMenu(this, changed),
      {
        content: this.mode === BYPASSED ? "Remove Bypass (Ctrl+B)" : "Bypass (Ctrl+B)",
        callback: () => { toggleMode(targets, BYPASSED); changed(); },
      },
      {
        content: this.mode === MUTED ? "Unmute (Ctrl+M)" : "Mute (Ctrl+M)",
        callback: () => { toggleMode(targets, MUTED); changed(); },
      },
    ];
  }

  get renderingColor() {
    return MODE_LOOK[this.mode]?.color ?? super.renderingColor;
  }

  get renderingBgColor() {
    return MODE_LOOK[this.mode]?.bgcolor ?? super.renderingBgColor;
  }

  /** @param {CanvasRenderingContext2D} ctx */
  onDrawBackground(ctx) {
    drawUploadPreview(ctx, this);
  }

  /** @param {CanvasRenderingContext2D} ctx */
  onDrawForeground(ctx) {
    const label = MODE_LOOK[this.mode]?.label;
    if (label) drawTitleNote(ctx, this, label, "#ddd");
    drawConvertedSockets(ctx, this);
  }
}

/** @param {Services} services @param {string} type @param {any} def */
function registerSchemaNode(services, type, def) {
  const NodeClass = class extends SchemaNode {};
  Object.defineProperty(NodeClass, "name", { value: `${type.replace(/\W/g, "_")}Node` });
  NodeClass.services = services;
  NodeClass.nodeDef = def;
  NodeClass.specs = inputSpecs(def);
  NodeClass.title = def.display_name || type;
  if (def.output_node) NodeClass.color = OUTPUT_NODE_COLOR;
  LiteGraph.registerNodeType(type, NodeClass);
  // registerNodeType derives the category from a "path/like" type name; the schema says it.
  NodeClass.category = def.category || undefined;
  NodeClass.skip_list = Boolean(def.deprecated);
  NodeClass.description = def.description;
}

/** @param {any} node @param {any} def */
function addSchemaOutputs(node, def) {
  const outputs = def.output ?? [];
  outputs.forEach((/** @type {any} */ type, /** @type {number} */ index) => {
    const slotType = Array.isArray(type) ? "COMBO" : String(type);
    const name = def.output_name?.[index] ?? slotType;
    node.addOutput(name, slotType, def.output_is_list?.[index] ? { shape: SlotShape.Grid } : undefined);
  });
}

/**
 * After loading: sockets the schema has but the file lacks (a definition that gained an input)
 * are appended, so existing link slot indices stay valid.
 * @param {any} node @param {typeof SchemaNode} ctor
 */
function addMissingSlots(node, ctor) {
  for (const spec of ctor.specs) {
    if (isWidgetInput(spec) || node.inputs.some((/** @type {any} */ slot) => slot.name === spec.name)) continue;
    node.addInput(spec.name, socketType(spec), spec.optional ? { shape: SlotShape.HollowCircle } : undefined);
  }
  const def = ctor.nodeDef;
  for (let index = node.outputs.length; index < (def.output ?? []).length; index++) {
    const type = def.output[index];
    const slotType = Array.isArray(type) ? "COMBO" : String(type);
    node.addOutput(def.output_name?.[index] ?? slotType, slotType);
  }
}

/** The name a widget's value is stored under: control widgets share a name, so add the target's. */
function storageName(/** @type {any} */ widget) {
  return widget.controls ? `${widget.controls.name}.${widget.name}` : widget.name;
}

/** @param {any} node */
function namedValues(node) {
  /** @type {Record<string, any>} */
  const named = {};
  for (const widget of node.widgets ?? []) {
    if (widget.serialize === false || !widget.name) continue;
    named[storageName(widget)] = widget.value;
  }
  return named;
}

/** @param {any} node @param {Record<string, any>} named */
function applyNamedValues(node, named) {
  for (const widget of node.widgets ?? []) {
    if (widget.serialize === false) continue;
    const key = storageName(widget);
    if (key in named) widget.value = named[key];
    else if (widget.controls && widget.name in named) widget.value = named[widget.name];
    else widget.value = widget.initialValue; // newer than the file: not a shifted positional value
  }
}

/**
 * Positional values as ComfyUI writes them, tolerating files that lack a control value after a
 * seed or carry extras (a combo control's filter text, LoadImage's upload button value): the same
 * reconciliation the server's converter does, so both read a file the same way.
 * @param {any} node @param {any[]} values
 */
function applyPositionalValues(node, values) {
  const widgets = (node.widgets ?? []).filter((/** @type {any} */ widget) => widget.serialize !== false);
  let index = 0;
  // litegraph already assigned the values one by one; redo it, since extras shift positions.
  for (const [position, widget] of widgets.entries()) {
    if (index >= values.length) {
      widget.value = widget.initialValue; // a widget newer than the file
      continue;
    }
    if (widget.controls) {
      const value = values[index];
      if (typeof value !== "string" || !CONTROL_VALUES.includes(value)) {
        widget.value = "fixed"; // the file has no control value: keep its seed as it is
        continue;
      }
      widget.value = value;
      index++;
      const widgetsLeft = widgets.length - position - 1;
      const isComboControl = Array.isArray(widget.controls.options?.values);
      if (isComboControl && values.length - index > widgetsLeft
          && (typeof values[index] === "string" || values[index] == null)) index++; // the filter text
      continue;
    }
    widget.value = values[index++];
  }
}

/**
 * Set (or, when all already have it, clear) a mode on nodes: 4 bypass, 2 mute. Returns whether
 * anything changed.
 * @param {any[]} nodes @param {number} mode
 */
export function toggleMode(nodes, mode) {
  if (!nodes.length) return false;
  const target = nodes.every((node) => node.mode === mode) ? LGraphEventMode.ALWAYS : mode;
  for (const node of nodes) node.mode = target;
  nodes[0].setDirtyCanvas?.(true, true);
  return true;
}

/** Remove litegraph entries that do not apply to Flowmill's nodes. @param {any[]} options */
function tidyNodeMenu(options) {
  const unwanted = (/** @type {any} */ entry) => entry && typeof entry === "object"
    && (String(entry.content).startsWith("Convert to Subgraph") || entry.content === "Mode"
      || ((entry.content === "Inputs" || entry.content === "Outputs") && entry.disabled));
  for (let index = options.length - 1; index >= 0; index--) {
    if (unwanted(options[index])) options.splice(index, 1);
  }
}

/** @param {CanvasRenderingContext2D} ctx @param {any} node @param {string} text @param {string} colour */
function drawTitleNote(ctx, node, text, colour) {
  if (node.flags?.collapsed) return;
  ctx.save();
  ctx.font = "11px sans-serif";
  ctx.textAlign = "right";
  ctx.fillStyle = colour;
  ctx.fillText(text, node.size[0] - 10, -LiteGraph.NODE_TITLE_HEIGHT * 0.35);
  ctx.restore();
}

/**
 * litegraph draws a widget's input socket only while it is linked or hovered; a converted
 * widget shows its socket all the time so the conversion is visible.
 * @param {CanvasRenderingContext2D} ctx @param {any} node
 */
function drawConvertedSockets(ctx, node) {
  if (node.flags?.collapsed) return;
  for (const slot of node.inputs) {
    if (!slot.widget || slot.link != null || !slot.pos) continue;
    ctx.save();
    ctx.strokeStyle = TYPE_COLOURS[slot.type] ?? "#9a9";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(slot.pos[0], slot.pos[1], 4, 0, Math.PI * 2);
    ctx.stroke();
    ctx.restore();
  }
}

/** Note, MarkdownNote and the legacy Reroute node: ComfyUI files use them; the server has none. */
function registerFrontendNodes(/** @type {Services} */ services) {
  class NoteNode extends LGraphNode {
    static color = "#4d4a2c";
    static bgcolor = "#36341f";
    constructor(/** @type {string} */ title) {
      super(title ?? "Note", /** @type {any} */ (new.target).type);
      this.serialize_widgets = true;
      const spec = { name: "text", type: "STRING", options: { multiline: true, default: "" }, optional: false };
      addMultilineWidget(this, spec, services.multiline);
      this.setSize([400, 160]);
    }

    onRemoved() {
      for (const widget of this.widgets ?? []) widget.onRemove?.();
    }
  }
  class MarkdownNoteNode extends NoteNode {}

  class RerouteNode extends LGraphNode {
    static title_mode = TitleMode.NO_TITLE;
    static collapsable = false;
    constructor(/** @type {string} */ title) {
      super(title ?? "Reroute", "Reroute");
      this.addInput("", "*");
      this.addOutput("", "*");
      this.setSize([75, 26]);
    }

    /** The output takes the type of what feeds the input, so type checks apply downstream. */
    onConnectionsChange(/** @type {number} */ kind, /** @type {number} */ _index, /** @type {boolean} */ connected,
      /** @type {any} */ link) {
      if (kind !== LiteGraph.INPUT || !this.outputs?.[0]) return;
      this.outputs[0].type = connected && link?.type ? link.type : "*";
    }
  }

  /** @type {[string, any][]} */
  const types = [["Note", NoteNode], ["MarkdownNote", MarkdownNoteNode], ["Reroute", RerouteNode]];
  for (const [type, NodeClass] of types) {
    NodeClass.title = type === "MarkdownNote" ? "Markdown Note" : type;
    LiteGraph.registerNodeType(type, NodeClass);
    NodeClass.category = FRONTEND_CATEGORY;
  }
  return types.map(([type]) => type);
}

/**
 * The ComfyUI core node types (the server's list); null when the server cannot say (an older
 * server), and the report then names both possibilities.
 * @param {any} app @returns {Promise<Set<string> | null>}
 */
async function loadCoreTypes(app) {
  try {
    const reply = await app.api.fetchJson("/api/flowmill/core_node_types");
    return Array.isArray(reply?.types) ? new Set(reply.types.map(String)) : null;
  } catch (error) {
    console.warn("flowmill: the server did not list ComfyUI's core node types", error);
    return null;
  }
}

/** @typedef {"core" | "custom" | "unknown"} MissingKind */

/** @param {string} type @param {Set<string> | null} coreTypes @returns {MissingKind} */
function missingKind(type, coreTypes) {
  if (!coreTypes) return "unknown";
  return coreTypes.has(type) ? "core" : "custom";
}

const KIND_GROUPS = /** @type {Record<MissingKind, string>} */ ({
  core: "ComfyUI core nodes Flowmill does not have yet",
  custom: "custom nodes not installed",
  unknown: "node types this server does not have",
});
const KIND_LABELS = /** @type {Record<MissingKind, string>} */ ({
  core: "core node not in Flowmill yet", custom: "custom node not installed", unknown: "missing",
});
const KEPT = "It is kept as it is (outlined in red), so saving loses nothing, but the workflow cannot run until ";

/** @param {string} type @param {MissingKind} kind */
function missingMessage(type, kind) {
  if (kind === "core") {
    return `${type} is a ComfyUI core node Flowmill does not have yet. ${KEPT}Flowmill implements it or the node `
      + "is removed.";
  }
  if (kind === "custom") {
    return `${type} is not a ComfyUI core node: it comes from a custom node pack that is not installed here. `
      + `${KEPT}a node pack provides it or the node is removed.`;
  }
  return `This server has no ${type} node (a ComfyUI core node Flowmill does not have yet, or a custom node that is `
    + `not installed). ${KEPT}it is provided or the node is removed.`;
}

/**
 * The error panel's report of missing types: a title grouping them by kind, and one entry per node.
 * @param {any} app @param {string[]} missing @param {(type: string) => MissingKind} kindOf
 */
function missingReport(app, missing, kindOf) {
  /** @type {Record<MissingKind, string[]>} */
  const groups = { core: [], custom: [], unknown: [] };
  for (const type of missing) groups[kindOf(type)].push(type);
  const parts = /** @type {MissingKind[]} */ (["core", "custom", "unknown"])
    .filter((kind) => groups[kind].length)
    .map((kind) => `${KIND_GROUPS[kind]}: ${groups[kind].join(", ")}`);
  const types = new Set(missing);
  const entries = app.graph.nodes.filter((/** @type {any} */ node) => types.has(String(node.type)))
    .map((/** @type {any} */ node) => {
      const type = String(node.type);
      return { nodeId: node.id, label: `#${node.id} ${type}`, message: missingMessage(type, kindOf(type)) };
    });
  return { title: `Missing node types: ${parts.join("; ")}`, entries };
}

/**
 * A placeholder class for a node type the server does not have.
 * @param {string} type @param {(type: string) => MissingKind} kindOf
 */
function missingNodeClass(type, kindOf) {
  return class MissingNode extends LGraphNode {
    static title = type;
    static skip_list = true;
    static missing = true;
    /** @type {any} the file's widget values, written back unchanged */
    savedWidgetValues = undefined;

    constructor(/** @type {string} */ title) {
      super(title ?? type, type);
    }

    get isMissing() {
      return true;
    }

    onConfigure(/** @type {any} */ info) {
      this.savedWidgetValues = info.widgets_values;
    }

    onSerialize(/** @type {any} */ data) {
      if (this.savedWidgetValues !== undefined) data.widgets_values = structuredClone(this.savedWidgetValues);
    }

    get renderingColor() {
      return MISSING_LOOK.color;
    }

    get renderingBgColor() {
      return MISSING_LOOK.bgcolor;
    }

    onDrawForeground(/** @type {CanvasRenderingContext2D} */ ctx) {
      if (this.flags?.collapsed) return;
      const rows = Math.max(this.inputs?.length ?? 0, this.outputs?.length ?? 0);
      ctx.save();
      ctx.font = "bold 12px sans-serif";
      ctx.fillStyle = "#ff8a8a";
      const label = `${KIND_LABELS[kindOf(type)]}: ${type}`;
      ctx.fillText(label, 10, rows * LiteGraph.NODE_SLOT_HEIGHT + 18, this.size[0] - 20);
      ctx.restore();
    }
  };
}

/**
 * Types a workflow uses (top level and inside subgraph definitions) that neither the server nor
 * the frontend knows; subgraph instance types are known through their definitions.
 * @param {any} workflow @param {Set<string>} known
 * @returns {string[]}
 */
function missingTypes(workflow, known) {
  const definitions = Array.isArray(workflow?.definitions?.subgraphs) ? workflow.definitions.subgraphs : [];
  const subgraphIds = new Set(definitions.map((/** @type {any} */ subgraph) => subgraph?.id));
  const nodes = [workflow?.nodes, ...definitions.map((/** @type {any} */ subgraph) => subgraph?.nodes)]
    .flatMap((list) => (Array.isArray(list) ? list : []));
  const missing = new Set();
  for (const node of nodes) {
    const type = node?.type == null ? "" : String(node.type);
    if (type && !known.has(type) && !subgraphIds.has(type)) missing.add(type);
  }
  return [...missing].sort();
}

/**
 * Before any workflow is configured into the graph, register placeholder classes for its unknown
 * types (so they open as marked nodes that keep their data) and a node type per subgraph
 * definition (litegraph creates instances by type).
 * @param {any} app @param {() => Set<string>} known @param {(type: string) => MissingKind} kindOf
 */
function watchConfigure(app, known, kindOf) {
  app.graph.events.addEventListener("configuring", (/** @type {CustomEvent} */ event) => {
    for (const type of missingTypes(event.detail?.data, known())) {
      if (!LiteGraph.registered_node_types[type]) LiteGraph.registerNodeType(type, missingNodeClass(type, kindOf));
    }
  });
  app.graph.events.addEventListener("subgraph-created", (/** @type {CustomEvent} */ event) => {
    const { subgraph } = event.detail;
    const instanceData = { id: -1, type: subgraph.id, pos: [0, 0], size: [200, 60], flags: {}, order: 0, mode: 0 };
    const InstanceClass = class extends SubgraphNode {
      constructor() {
        super(app.graph, subgraph, instanceData);
      }
    };
    InstanceClass.title = subgraph.name;
    InstanceClass.skip_list = true;
    LiteGraph.registerNodeType(subgraph.id, InstanceClass);
  });
}

/** Apply every seed control once (after a prompt was queued). @param {any} app */
function applySeedControls(app) {
  let changed = false;
  for (const node of app.graph.nodes) {
    if (node.mode === MUTED || node.mode === BYPASSED) continue;
    for (const widget of node.widgets ?? []) {
      if (!widget.controls) continue;
      if (node.getSlotFromWidget?.(widget.controls)?.link != null) continue; // the link decides
      if (applyControl(widget)) changed = true;
    }
  }
  if (changed) {
    app.canvas.setDirty(true, false);
    app.markChanged();
  }
}

/**
 * Give each socket type a colour, for sockets and for links.
 * @param {any} canvas @param {Record<string, any>} nodeDefs
 */
function colourSocketTypes(canvas, nodeDefs) {
  const types = new Set(Object.keys(TYPE_COLOURS));
  for (const def of Object.values(nodeDefs)) {
    for (const type of def.output ?? []) if (typeof type === "string") types.add(type);
    for (const spec of inputSpecs(def)) if (!isWidgetInput(spec)) types.add(socketType(spec));
  }
  for (const type of types) {
    if (type === "*") continue;
    const colour = TYPE_COLOURS[type] ?? hashedColour(type);
    canvas.default_connection_color_byType[type] = colour;
    LGraphCanvas.link_type_colors[type] = colour;
  }
}

/** @param {string} text */
function hashedColour(text) {
  let hash = 0;
  for (const char of text) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360}, 45%, 65%)`;
}
