// @ts-check
/**
 * What a run looks like on the canvas: the executing outline, the progress bar, the "cached" badge,
 * error outlines with their failing inputs, the latent preview and the output images.
 *
 * The state lives here, in a Map keyed by the node id as a string (websocket ids are strings,
 * litegraph's are numbers), not on node objects: undo rebuilds nodes from JSON, and the state must
 * survive that. Every node the graph adds gets the same small hooks (a stroke style, a badge and a
 * background drawer) that read the Map when the node is drawn, so a rebuilt node shows the same run.
 * Litegraph's own fields (`has_errors`, `progress`) and `imgs` are mirrored onto the node for its
 * drawing, for other modules and for the tests. Nothing here talks to the server.
 */
import { LGraphBadge } from "../vendor/litegraph/litegraph.es.js";

/** Output images larger than this (either side) are drawn from a downscaled copy (frontend.md §5.3). */
const THUMBNAIL_MAX_SIDE = 384;
/** Room a node is grown to, below its widgets, when it first gets an image to show. */
const IMAGE_AREA_MIN = 160;
const IMAGE_AREA_MAX = 320;
const IMAGE_MARGIN = 6;
/** The inline error under a node: at most this many lines, wrapped to the node's width. */
const ERROR_LINES_MAX = 3;
const ERROR_LINE_HEIGHT = 14;
const ERROR_GAP = 8; // clear of the red error outline litegraph draws around the node
/** Graph units below a node an inline error may take (workflow views keep it visible). */
export const ERROR_ROOM = ERROR_GAP + ERROR_LINES_MAX * ERROR_LINE_HEIGHT + 4;
const HOOKED = Symbol("flowmill.runHooks");

/** Canvas colours, read once from css/run.css custom properties so the theme stays in CSS. */
const COLOUR_DEFAULTS = {
  "--run-executing": "#35d07f",
  "--run-cached-bg": "#2d3f5c",
  "--run-cached-fg": "#cfe0ff",
  "--run-error": "#ff5a5a",
  "--run-error-band": "rgba(255, 90, 90, 0.28)",
};

/**
 * @typedef {{ image: HTMLImageElement, thumbnail: ImageBitmap | null }} ShownImage
 * @typedef {"validation" | "run"} ErrorKind  a refused queue, or a node that failed while running
 * @typedef {{
 *   executing: boolean, cached: boolean, progress: number,
 *   error: string | null, errorKind: ErrorKind | null, inputErrors: Set<string>,
 *   preview: ShownImage | null, previewUrl: string | null, previewSeq: number,
 *   outputs: ShownImage[], fitted: boolean, errorBox: number[] | null,
 * }} NodeRunState
 */

/** @returns {NodeRunState} */
function emptyState() {
  return { executing: false, cached: false, progress: 0, error: null, errorKind: null, inputErrors: new Set(),
           preview: null, previewUrl: null, previewSeq: 0, outputs: [], fitted: false, errorBox: null };
}

/**
 * A websocket node id ("5", or "12:5" inside a subgraph) as the key of its top-level node.
 * @param {string | number | null | undefined} id
 */
export function topLevelId(id) {
  if (id == null || id === "") return null;
  return String(id).split(":")[0];
}

export class RunDisplay {
  /** @param {any} app */
  constructor(app) {
    this.app = app;
    /** @type {Map<string, NodeRunState>} */
    this.states = new Map();
    /** @type {string | null} */
    this.executingId = null;
    this.redrawPending = false;
    const style = getComputedStyle(document.documentElement);
    /** @type {Record<string, string>} */
    this.colours = {};
    for (const [name, fallback] of Object.entries(COLOUR_DEFAULTS)) {
      this.colours[name] = style.getPropertyValue(name).trim() || fallback;
    }
    this.cachedBadge = new LGraphBadge({ text: "cached", fgColor: this.colours["--run-cached-fg"],
                                         bgColor: this.colours["--run-cached-bg"], fontSize: 11, height: 18 });
    this.noBadge = new LGraphBadge({ text: "" });

    const graph = app.graph;
    const previous = graph.onNodeAdded;
    const display = this;
    // Chained, not replaced: other modules may watch added nodes too.
    graph.onNodeAdded = function (/** @type {any} */ node) {
      previous?.call(this, node);
      display.attach(node);
    };
    for (const node of graph.nodes || []) this.attach(node);
  }

  /** @param {string | null} key */
  nodeOf(key) {
    if (key == null) return null;
    const graph = this.app.graph;
    return graph.getNodeById(/^\d+$/.test(key) ? Number(key) : key) || null;
  }

  /** @param {string} key @returns {NodeRunState} */
  stateOf(key) {
    let state = this.states.get(key);
    if (!state) {
      state = emptyState();
      this.states.set(key, state);
    }
    return state;
  }

  /**
   * Give a node the hooks that draw its run state. Idempotent; runs for every node the graph adds.
   * @param {any} node
   */
  attach(node) {
    if (!node || node[HOOKED]) return;
    node[HOOKED] = true;
    const display = this;
    const executingColour = this.colours["--run-executing"];
    node.strokeStyles = node.strokeStyles || {};
    node.strokeStyles.executing = function () {
      if (display.states.get(String(this.id))?.executing) {
        return { color: executingColour, lineWidth: 3, padding: 7 };
      }
      return undefined;
    };
    node.badges = node.badges || [];
    node.badges.push(() => (display.states.get(String(node.id))?.cached ? display.cachedBadge : display.noBadge));
    const drawOwnBackground = node.onDrawBackground;
    node.onDrawBackground = function (/** @type {CanvasRenderingContext2D} */ ctx, ...rest) {
      drawOwnBackground?.call(this, ctx, ...rest);
      const state = display.states.get(String(this.id));
      if (state && !this.flags?.collapsed) display.draw(this, ctx, state);
    };
    const state = this.states.get(String(node.id));
    if (state) this.mirror(node, state);
  }

  /**
   * Copy the state onto litegraph's own fields. `has_errors` is only ever set, or cleared when
   * this module set it: missing node types use it too.
   * @param {any} node @param {NodeRunState} state
   */
  mirror(node, state) {
    if (state.error != null) node.has_errors = true;
    node.progress = state.progress || undefined;
    if (state.outputs.length) node.imgs = state.outputs.map((shown) => shown.image);
  }

  /** One `setDirty` per animation frame, however many messages arrive (frontend.md §5.3). */
  redraw() {
    if (this.redrawPending) return;
    this.redrawPending = true;
    requestAnimationFrame(() => {
      this.redrawPending = false;
      this.app.canvas.setDirty(true, false);
    });
  }

  // -- state changes -------------------------------------------------------------------------

  /** @param {string | null} key  the executing node, or null when the prompt is done */
  setExecuting(key) {
    if (this.executingId === key) return;
    if (this.executingId != null) {
      const before = this.states.get(this.executingId);
      if (before) {
        before.executing = false;
        before.progress = 0;
        const node = this.nodeOf(this.executingId);
        if (node) node.progress = undefined;
      }
    }
    this.executingId = key;
    if (key != null) {
      const state = this.stateOf(key);
      state.executing = true;
      state.cached = false;
    }
    this.redraw();
  }

  /** @param {string} key @param {number} value @param {number} max */
  setProgress(key, value, max) {
    const state = this.stateOf(key);
    state.progress = max > 0 ? Math.min(1, Math.max(0, value / max)) : 0;
    const node = this.nodeOf(key);
    if (node) node.progress = state.progress || undefined;
    this.redraw();
  }

  /** @param {string[]} keys */
  setCached(keys) {
    for (const key of keys) this.stateOf(key).cached = true;
    this.redraw();
  }

  /**
   * @param {string} key
   * @param {string} message  shown under the node
   * @param {ErrorKind} kind
   * @param {Iterable<string>} [inputNames]  inputs to mark
   */
  setError(key, message, kind, inputNames = []) {
    const state = this.stateOf(key);
    state.error = message;
    state.errorKind = kind;
    for (const name of inputNames) state.inputErrors.add(name);
    const node = this.nodeOf(key);
    if (node) node.has_errors = true;
    this.redraw();
  }

  /**
   * The latest latent preview of a node. Frames arrive faster than they decode: a frame that
   * finishes decoding after a newer one started is dropped.
   * @param {string} key @param {Blob} blob
   * @returns {Promise<boolean>} whether this frame is now shown
   */
  async setPreview(key, blob) {
    const state = this.stateOf(key);
    const seq = ++state.previewSeq;
    const url = URL.createObjectURL(blob);
    const image = new Image();
    image.src = url;
    try {
      await image.decode();
    } catch {
      URL.revokeObjectURL(url);
      return false;
    }
    if (seq !== state.previewSeq || this.states.get(key) !== state) {
      URL.revokeObjectURL(url);
      return false;
    }
    if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
    state.previewUrl = url;
    state.preview = { image, thumbnail: null };
    state.fitted = false;
    this.redraw();
    return true;
  }

  /**
   * Output images of a node (SaveImage, PreviewImage), kept by node id so they outlive redraws,
   * undo and node rebuilds.
   * @param {string} key @param {string[]} urls
   */
  setOutputs(key, urls) {
    const state = this.stateOf(key);
    for (const shown of state.outputs) shown.thumbnail?.close();
    state.outputs = urls.map((url) => {
      const image = new Image();
      /** @type {ShownImage} */
      const shown = { image, thumbnail: null };
      image.addEventListener("load", () => {
        this.#makeThumbnail(state, shown);
        this.redraw();
      }, { once: true });
      image.src = url;
      return shown;
    });
    state.fitted = false;
    const node = this.nodeOf(key);
    if (node) node.imgs = state.outputs.map((shown) => shown.image);
    this.redraw();
  }

  /** @param {NodeRunState} state @param {ShownImage} shown */
  async #makeThumbnail(state, shown) {
    const { naturalWidth: width, naturalHeight: height } = shown.image;
    const scale = THUMBNAIL_MAX_SIDE / Math.max(width, height);
    if (!(scale < 1)) return;
    try {
      const bitmap = await createImageBitmap(shown.image, { resizeWidth: Math.round(width * scale),
        resizeHeight: Math.round(height * scale), resizeQuality: "medium" });
      if (state.outputs.includes(shown)) shown.thumbnail = bitmap;
      else bitmap.close();
      this.redraw();
    } catch {
      // The full image still draws; a thumbnail only saves time per frame.
    }
  }

  /** A new run starts: forget executing, progress, cached and error marks (images stay). */
  clearRun() {
    this.executingId = null;
    for (const [key, state] of this.states) {
      state.executing = false;
      state.cached = false;
      state.progress = 0;
      const node = this.nodeOf(key);
      if (node) node.progress = undefined;
    }
    this.clearErrors();
  }

  /**
   * Forget error marks only: all of them when a run starts, the validation ones when a queue
   * succeeds (by then the websocket may already have reported this very prompt's run error).
   * @param {ErrorKind} [kind]  only this kind
   */
  clearErrors(kind) {
    for (const [key, state] of this.states) {
      if (state.error == null && !state.inputErrors.size) continue;
      if (kind && state.errorKind !== kind) continue;
      state.error = null;
      state.errorKind = null;
      state.errorBox = null;
      state.inputErrors.clear();
      const node = this.nodeOf(key);
      // A node whose type the server lacks stays outlined (nodes.js registers such types as
      // placeholder classes with a static `missing` flag; workflow_io.js marks them).
      const nodeClass = node && this.app.LiteGraph.registered_node_types[node.type];
      if (node && nodeClass && !nodeClass.missing) node.has_errors = false;
    }
    this.redraw();
  }

  /**
   * Another workflow replaced the graph: node ids no longer mean the same nodes. The new nodes
   * were given the old state as they were added (as undo needs), so take it back off them.
   */
  reset() {
    for (const [key, state] of this.states) {
      if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
      for (const shown of state.outputs) shown.thumbnail?.close();
      state.previewSeq++; // a preview still decoding must not land on the new graph
      const node = this.nodeOf(key);
      if (!node) continue;
      node.progress = undefined;
      if (state.outputs.length) node.imgs = undefined;
      if (state.error != null && this.app.LiteGraph.registered_node_types[node.type]) node.has_errors = false;
    }
    this.states.clear();
    this.executingId = null;
    this.redraw();
  }

  // -- drawing (per frame: keep it cheap) ---------------------------------------------------

  /** @param {any} node @param {CanvasRenderingContext2D} ctx @param {NodeRunState} state */
  draw(node, ctx, state) {
    if (state.inputErrors.size) this.#drawInputErrors(node, ctx, state);
    // While a node runs its live preview wins; afterwards its outputs do.
    const shown = state.executing && state.preview ? [state.preview]
      : state.outputs.length ? state.outputs : state.preview ? [state.preview] : [];
    if (shown.length) this.#drawImages(node, ctx, state, shown);
    if (state.error != null && !this.app.canvas.low_quality) this.#drawErrorText(node, ctx, state);
    else state.errorBox = null;
  }

  /** Bottom of the slot and widget rows, in node coordinates. @param {any} node */
  #contentBottom(node) {
    const LiteGraph = this.app.LiteGraph;
    const rows = Math.max(node.inputs?.filter((input) => !input.widget).length || 0, node.outputs?.length || 0);
    let bottom = rows * LiteGraph.NODE_SLOT_HEIGHT + 4;
    for (const widget of node.widgets || []) {
      if (!isShown(node, widget)) continue;
      bottom = Math.max(bottom, widget.y + (widget.computedHeight || LiteGraph.NODE_WIDGET_HEIGHT));
    }
    return bottom + IMAGE_MARGIN;
  }

  /**
   * @param {any} node @param {CanvasRenderingContext2D} ctx @param {NodeRunState} state
   * @param {ShownImage[]} shown
   */
  #drawImages(node, ctx, state, shown) {
    const ready = shown.filter((item) => item.image.complete && item.image.naturalWidth > 0);
    if (!ready.length) return;
    // Widget rows are laid out after this hook runs: a node never drawn before has none yet.
    if (node.widgets?.some((/** @type {any} */ widget) => widget.last_y == null && isShown(node, widget))) {
      this.redraw();
      return;
    }
    const top = this.#contentBottom(node);
    const [width] = node.size;
    if (!state.fitted) {
      // Grow the node once per new image set so the picture is not a sliver (never shrink it).
      state.fitted = true;
      const { naturalWidth, naturalHeight } = ready[0].image;
      const wanted = Math.min(IMAGE_AREA_MAX, Math.max(IMAGE_AREA_MIN, (width - 2 * IMAGE_MARGIN) * naturalHeight / naturalWidth));
      if (node.size[1] < top + wanted) {
        node.setSize([width, top + wanted + IMAGE_MARGIN]);
        this.redraw();
      }
    }
    const area = [IMAGE_MARGIN, top, width - 2 * IMAGE_MARGIN, node.size[1] - top - IMAGE_MARGIN];
    if (area[2] < 16 || area[3] < 16) return;
    const { naturalWidth: iw, naturalHeight: ih } = ready[0].image;
    const columns = bestColumns(ready.length, area[2], area[3], iw / ih);
    const rows = Math.ceil(ready.length / columns);
    const cellWidth = area[2] / columns;
    const cellHeight = area[3] / rows;
    ready.forEach((item, index) => {
      const { naturalWidth, naturalHeight } = item.image;
      const scale = Math.min(cellWidth / naturalWidth, cellHeight / naturalHeight);
      const w = naturalWidth * scale;
      const h = naturalHeight * scale;
      const x = area[0] + (index % columns) * cellWidth + (cellWidth - w) / 2;
      const y = area[1] + Math.floor(index / columns) * cellHeight + (cellHeight - h) / 2;
      ctx.drawImage(item.thumbnail || item.image, x, y, w, h);
    });
  }

  /**
   * A red band behind each failing input's row (socket or widget), and a ring around its socket.
   * @param {any} node @param {CanvasRenderingContext2D} ctx @param {NodeRunState} state
   */
  #drawInputErrors(node, ctx, state) {
    const LiteGraph = this.app.LiteGraph;
    const colour = this.colours["--run-error"];
    ctx.save();
    for (const name of state.inputErrors) {
      const index = node.inputs?.findIndex((/** @type {any} */ input) => input.name === name) ?? -1;
      const input = index >= 0 ? node.inputs[index] : null;
      const widget = node.widgets?.find((/** @type {any} */ w) => w.name === name);
      let top;
      let height;
      let socket = null;
      if (widget && widget.y != null && !(input && input.link != null)) {
        top = widget.y - 2;
        height = (widget.computedHeight || LiteGraph.NODE_WIDGET_HEIGHT) + 4;
      } else if (input) {
        const pos = node.getConnectionPos(true, index);
        socket = [pos[0] - node.pos[0], pos[1] - node.pos[1]];
        top = socket[1] - LiteGraph.NODE_SLOT_HEIGHT / 2;
        height = LiteGraph.NODE_SLOT_HEIGHT;
      } else {
        continue;
      }
      ctx.fillStyle = this.colours["--run-error-band"];
      ctx.fillRect(0, top, node.size[0], height);
      ctx.strokeStyle = colour;
      ctx.lineWidth = 2;
      ctx.strokeRect(1, top, node.size[0] - 2, height);
      if (socket) {
        ctx.beginPath();
        ctx.arc(socket[0], socket[1], 8, 0, Math.PI * 2);
        ctx.stroke();
      }
    }
    ctx.restore();
  }

  /**
   * The error under the node, wrapped to the node's width and cut to the room left before the next
   * node below (the error panel has the whole text): it never covers another node. Its box, in
   * graph coordinates, is kept on the state (`errorBox`) for views that keep it visible.
   * @param {any} node @param {CanvasRenderingContext2D} ctx @param {NodeRunState} state
   */
  #drawErrorText(node, ctx, state) {
    const width = node.size[0];
    const top = node.size[1] + ERROR_GAP;
    const room = this.#roomBelow(node) - ERROR_GAP;
    const lineCount = Math.min(ERROR_LINES_MAX, Math.floor((room - 4) / ERROR_LINE_HEIGHT));
    if (lineCount < 1) {
      state.errorBox = null; // no room at all: the red outline and the error panel say it
      return;
    }
    ctx.save();
    ctx.font = "bold 12px sans-serif";
    const lines = wrapText(ctx, String(state.error).replace(/\s+/g, " ").trim(), width - 8, lineCount);
    const height = lines.length * ERROR_LINE_HEIGHT + 4;
    ctx.fillStyle = "rgba(20, 12, 14, 0.85)"; // legible over links and the grid
    ctx.fillRect(0, top, width, height);
    ctx.fillStyle = this.colours["--run-error"];
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    lines.forEach((line, index) => ctx.fillText(line, 4, top + 2 + index * ERROR_LINE_HEIGHT));
    ctx.restore();
    state.errorBox = [node.pos[0], node.pos[1] + top, width, height];
  }

  /** Graph units free below a node, down to the nearest node (title bar included) that overlaps it sideways. @param {any} node */
  #roomBelow(node) {
    const titleHeight = this.app.LiteGraph.NODE_TITLE_HEIGHT;
    const left = node.pos[0];
    const right = left + node.size[0];
    const bottom = node.pos[1] + node.size[1];
    let room = Infinity;
    for (const other of this.app.graph.nodes) {
      if (other === node) continue;
      const otherTop = other.pos[1] - titleHeight;
      const otherRight = other.pos[0] + (other.flags?.collapsed ? (other._collapsed_width || 80) : other.size[0]);
      const otherBottom = other.flags?.collapsed ? other.pos[1] : other.pos[1] + other.size[1];
      if (other.pos[0] >= right || otherRight <= left || otherBottom <= bottom) continue;
      room = Math.min(room, Math.max(0, otherTop - bottom));
    }
    return room;
  }
}

/**
 * Break text into at most `maxLines` lines no wider than `width`; the last one ends in "…" when
 * text is left over. Words longer than a line are cut.
 * @param {CanvasRenderingContext2D} ctx @param {string} text @param {number} width @param {number} maxLines
 * @returns {string[]}
 */
export function wrapText(ctx, text, width, maxLines) {
  const lines = [];
  let rest = text;
  while (rest && lines.length < maxLines) {
    let end = rest.length;
    if (ctx.measureText(rest).width > width) {
      // The longest prefix that fits, then back to the last space in it, if there is one.
      let low = 1;
      let high = rest.length;
      while (low < high) {
        const middle = Math.ceil((low + high) / 2);
        if (ctx.measureText(rest.slice(0, middle)).width <= width) low = middle;
        else high = middle - 1;
      }
      const space = rest.lastIndexOf(" ", low);
      end = space > 0 ? space : Math.max(1, low);
    }
    lines.push(rest.slice(0, end).trim());
    rest = rest.slice(end).trim();
  }
  if (rest && lines.length) {
    let last = lines[lines.length - 1];
    while (last && ctx.measureText(`${last}…`).width > width) last = last.slice(0, -1);
    lines[lines.length - 1] = `${last.trimEnd()}…`;
  }
  return lines;
}

/** Whether litegraph draws this widget row. @param {any} node @param {any} widget */
function isShown(node, widget) {
  return typeof node.isWidgetVisible === "function" ? node.isWidgetVisible(widget) : !widget.hidden;
}

/**
 * How many columns lay out `count` images of one aspect ratio biggest in a width x height area.
 * @param {number} count @param {number} width @param {number} height @param {number} aspect
 */
function bestColumns(count, width, height, aspect) {
  let best = 1;
  let bestScale = 0;
  for (let columns = 1; columns <= count; columns++) {
    const rows = Math.ceil(count / columns);
    const scale = Math.min(width / columns / aspect, height / rows);
    if (scale > bestScale) {
      bestScale = scale;
      best = columns;
    }
  }
  return best;
}
