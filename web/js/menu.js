// @ts-check
/**
 * How nodes get onto the canvas and how the keyboard edits it:
 *  - the search box (double-click on empty canvas; litegraph's box with Flowmill's ranking: display
 *    name, type and category, best matches first, with the category shown on each result; it says
 *    when nothing matches, and is placed so that it stays inside the window at its full height);
 *  - releasing a dragged link on empty canvas opens the same box, listing only node types with a
 *    socket of a matching type (and connects the chosen node);
 *  - the canvas menu: litegraph's "Add Node" (by category) and "Add Group", plus "Add Group for
 *    Selected Nodes" and "Add Reroute" on a link;
 *  - shortcuts: Ctrl+Z undo, Ctrl+Y / Ctrl+Shift+Z redo, Ctrl+B bypass, Ctrl+M mute, Ctrl+G group,
 *    Alt+C collapse (litegraph itself does Delete, Ctrl+C / Ctrl+V and Ctrl+A on the canvas);
 *  - the toolbar's Undo and Redo buttons.
 * Shortcuts never fire while the user types in an input, textarea or select.
 */
import { CanvasPointer, LGraphCanvas, LGraphGroup, LiteGraph, SubgraphNode } from "../vendor/litegraph/litegraph.es.js";
import { inputSpecs, isWidgetInput, socketType } from "./widgets/schema_widgets.js";

const MAX_RESULTS = 80;
/** Pixels kept between the search box and the window's edges. */
const SCREEN_MARGIN = 8;
/** Double-click window (ms): litegraph's 300 ms is tighter than desktops' usual 500 ms. */
const DOUBLE_CLICK_MS = 500;
/** Suggestions per socket type in litegraph's own connection menu (slot_types_default_in/out). */
const DEFAULTS_PER_TYPE = 6;
const BYPASSED = 4;
const MUTED = 2;

/**
 * @typedef {object} SearchEntry
 * @property {string} type
 * @property {string} title
 * @property {string} category
 * @property {string} lowerTitle
 * @property {string} lowerType
 * @property {string} lowerCategory
 * @property {boolean} deprecated
 * @property {boolean} experimental
 * @property {string[]} inputs   socket types of link inputs
 * @property {string[]} outputs  socket types of outputs
 */

/** @param {any} app */
export function installMenu(app) {
  LiteGraph.release_link_on_empty_shows_menu = true; // routed to the search box below
  LiteGraph.search_filter_enabled = false; // Flowmill filters by socket type itself
  CanvasPointer.doubleClickTime = DOUBLE_CLICK_MS;
  registerSlotTypes(app.nodeDefs);
  installSearch(app);
  installCanvasMenu(app);
  installShortcuts(app);
  installHistoryButtons(app);
}

// ---------------------------------------------------------------------------------------------
// Search

/** @param {any} app */
function installSearch(app) {
  const canvas = app.canvas;
  /** The socket type the open box is filtered by (per box, set when it opens). */
  const filter = { input: /** @type {string | null} */ (null), output: /** @type {string | null} */ (null) };
  const open = LGraphCanvas.prototype.showSearchBox;
  // Instance hooks (not prototype patches): every way litegraph opens the box passes through here.
  canvas.showSearchBox = (/** @type {any} */ event, /** @type {any} */ options = {}) => {
    filter.input = options.type_filter_in || null;
    filter.output = options.type_filter_out || null;
    const filtered = Boolean(filter.input || filter.output);
    // Without a socket filter the list starts empty: every type at once is noise, and the first
    // result (what Enter picks) then always belongs to what was typed.
    const fixed = { ...options, do_type_filter: false, show_all_on_open: filtered, show_all_if_empty: filtered };
    // litegraph reads the dragged slot from slot_from in both directions.
    if (fixed.node_to && fixed.slot_from == null && fixed.slot_to) fixed.slot_from = fixed.slot_to;
    const dialog = open.call(canvas, event, fixed);
    dialog.classList.add("app-search");
    const wanted = filter.input ? `input ${filter.input}` : filter.output ? `output ${filter.output}` : "";
    if (wanted) dialog.querySelector(".name").textContent = `Search (${wanted})`;
    // litegraph refreshes the results on keydown only; pasted or programmatically filled text
    // arrives as an "input" event, so forward it as a neutral keydown.
    const input = dialog.querySelector("input");
    input?.addEventListener("input", () => {
      input.dispatchEvent(new KeyboardEvent("keydown", { key: "Unidentified", bubbles: false }));
    });
    keepOnScreen(dialog);
    return dialog;
  };
  canvas.onSearchBox = (/** @type {HTMLElement} */ helper, /** @type {string} */ query) => {
    const results = searchNodeTypes(searchIndex(app), query, filter).slice(0, MAX_RESULTS);
    if (!results.length && query.trim()) helper.append(noMatchNote(query, filter));
    queueMicrotask(() => labelCategories(helper, app));
    return results.map((entry) => entry.type);
  };
  // A link dropped on empty canvas: litegraph's connection menu becomes the filtered search box.
  canvas.showConnectionMenu = (/** @type {any} */ options) => {
    const event = options.e;
    if (options.nodeFrom && options.slotFrom) {
      canvas.showSearchBox(event, { node_from: options.nodeFrom, slot_from: options.slotFrom,
        type_filter_in: options.slotFrom.type });
    } else if (options.nodeTo && options.slotTo) {
      canvas.showSearchBox(event, { node_to: options.nodeTo, slot_from: options.slotTo,
        type_filter_out: options.slotTo.type });
    }
  };
  // litegraph keeps the box until Escape or a pick; a click elsewhere on the canvas closes it too.
  canvas.canvas.addEventListener("pointerdown", () => canvas.search_box?.close(), true);
}

/**
 * What the box shows when no node type matches (litegraph shows an empty list).
 * @param {string} query @param {{input: string | null, output: string | null}} filter
 */
function noMatchNote(query, filter) {
  const note = document.createElement("div");
  note.className = "app-search-empty";
  const socket = filter.input ? ` with a ${filter.input} input`
    : filter.output ? ` with a ${filter.output} output` : "";
  note.textContent = `No node${socket} matches "${query.trim()}". Try part of its name, its type or its category.`;
  return note;
}

/**
 * Move the box (litegraph puts it at the pointer) so that it stays inside the window even once its
 * result list has grown to its full height, which CSS caps (canvas.css): opened near the right or
 * bottom edge it used to be cut off. It is placed once, not on each keystroke, so it never jumps.
 * @param {HTMLElement} dialog
 */
function keepOnScreen(dialog) {
  const helper = /** @type {HTMLElement | null} */ (dialog.querySelector(".helper"));
  if (helper) helper.style.maxHeight = ""; // litegraph shrinks it near the bottom; moving up is better
  const box = dialog.getBoundingClientRect();
  const zoom = dialog.offsetHeight ? box.height / dialog.offsetHeight : 1; // the box is scaled when zoomed in
  const helperMax = helper ? parseFloat(getComputedStyle(helper).maxHeight) || 0 : 0;
  const helperRoom = helper ? Math.max(0, helperMax - helper.offsetHeight) : 0;
  const fullHeight = box.height + helperRoom * zoom;
  const shiftX = Math.min(0, window.innerWidth - SCREEN_MARGIN - box.right) || Math.max(0, SCREEN_MARGIN - box.left);
  let shiftY = Math.min(0, window.innerHeight - SCREEN_MARGIN - (box.top + fullHeight));
  shiftY = Math.max(shiftY, SCREEN_MARGIN - box.top); // never above the window's top edge
  dialog.style.left = `${parseFloat(dialog.style.left || "0") + shiftX}px`;
  dialog.style.top = `${parseFloat(dialog.style.top || "0") + shiftY}px`;
  if (helper && box.top + shiftY + fullHeight > window.innerHeight - SCREEN_MARGIN) {
    // A window too short for the whole list: the list scrolls within what is left.
    const chrome = box.height - helper.offsetHeight * zoom;
    helper.style.maxHeight = `${Math.max(60, (window.innerHeight - 2 * SCREEN_MARGIN - chrome) / zoom)}px`;
  }
}

/**
 * Searchable node types: the server's and the frontend's, not missing-type placeholders nor
 * subgraph instances. Built per search: it is small and node types can change between loads.
 * @param {any} app @returns {SearchEntry[]}
 */
function searchIndex(app) {
  const entries = [];
  for (const [type, ctor] of Object.entries(LiteGraph.registered_node_types)) {
    if (ctor.missing || ctor.prototype instanceof SubgraphNode) continue;
    const def = app.nodeDefs[type];
    const title = String(ctor.title || type);
    const category = String(ctor.category || def?.category || "");
    const inputs = def ? inputSpecs(def).filter((spec) => !isWidgetInput(spec)).map(socketType)
      : (type === "Reroute" ? ["*"] : []);
    const outputs = def ? (def.output ?? []).map((/** @type {any} */ t) => (Array.isArray(t) ? "COMBO" : String(t)))
      : (type === "Reroute" ? ["*"] : []);
    entries.push({
      type, title, category, inputs, outputs,
      lowerTitle: title.toLowerCase(), lowerType: type.toLowerCase(), lowerCategory: category.toLowerCase(),
      deprecated: Boolean(def?.deprecated), experimental: Boolean(def?.experimental),
    });
  }
  return entries;
}

/**
 * Rank node types for a query. Every word must match the display name, the type or the category;
 * then the whole query decides the order: the display name itself, the type itself, a display
 * name that starts with it, one of whose words starts with it, a type that starts with it, and
 * only then names that merely contain it ("vae" lists VAE Decode, VAE Encode and Load VAE before
 * anything whose category or type happens to hold the letters). Near misses (one typo in a word
 * of four letters or more) are listed only when nothing matches properly, so a query for a node
 * Flowmill lacks ("lora") finds nothing instead of unrelated nodes. With a socket filter only
 * types that can take (or give) that socket type are listed, exact types before "*".
 * @param {SearchEntry[]} entries @param {string} query @param {{input: string | null, output: string | null}} filter
 * @returns {SearchEntry[]}
 */
export function searchNodeTypes(entries, query, filter) {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  const phrase = words.join(" ");
  const matched = [];
  const nearMisses = [];
  for (const entry of entries) {
    const socketScore = socketMatch(entry, filter);
    if (socketScore < 0) continue;
    let score = socketScore;
    let nearMiss = false;
    for (const word of words) {
      let wordScore = matchWord(entry, word);
      if (wordScore < 0 && isNearMiss(entry, word)) {
        wordScore = 0;
        nearMiss = true;
      }
      if (wordScore < 0) {
        score = -1;
        break;
      }
      score += wordScore;
    }
    if (score < 0) continue;
    if (phrase) score += phraseScore(entry, phrase);
    if (entry.deprecated) score -= 60;
    if (entry.experimental) score -= 10;
    (nearMiss ? nearMisses : matched).push({ entry, score });
  }
  const scored = matched.length ? matched : nearMisses;
  scored.sort((a, b) => b.score - a.score
    || (phrase ? a.entry.title.length - b.entry.title.length : a.entry.category.localeCompare(b.entry.category))
    || a.entry.title.localeCompare(b.entry.title));
  return scored.map((item) => item.entry);
}

/**
 * How well the whole query names the entry (it outweighs the per-word scores).
 * @param {SearchEntry} entry @param {string} phrase
 */
function phraseScore(entry, phrase) {
  const { lowerTitle: title, lowerType: type } = entry;
  const joined = phrase.replace(/\s+/g, "");
  if (title === phrase) return 1000;
  if (type === joined) return 900;
  if (title.startsWith(phrase)) return 500;
  if (titleWords(title).some((_, index, parts) => parts.slice(index).join(" ").startsWith(phrase))) return 300;
  if (type.startsWith(joined)) return 200;
  if (title.includes(phrase)) return 100;
  return 0;
}

/** @param {SearchEntry} entry @param {string} word  score of one query word, -1 for no match */
function matchWord(entry, word) {
  const { lowerTitle: title, lowerType: type, lowerCategory: category } = entry;
  if (title === word || type === word) return 100;
  if (title.startsWith(word) || type.startsWith(word)) return 80;
  if (titleWords(title).some((part) => part.startsWith(word))) return 60;
  if (title.includes(word) || type.includes(word)) return 40;
  if (category.includes(word)) return 20;
  return -1;
}

/** "vae decode (tiled)" -> ["vae", "decode", "tiled"] @param {string} title */
function titleWords(title) {
  return title.split(/[\s_\-()/]+/).filter(Boolean);
}

/**
 * One typo (a letter changed, added, dropped, or two swapped) away from a word of the display
 * name or the type, or from their start, for query words of four letters or more ("sampelr"
 * finds SamplerCustomAdvanced, "decdoe" VAE Decode).
 * @param {SearchEntry} entry @param {string} word
 */
function isNearMiss(entry, word) {
  if (word.length < 4) return false;
  return [...titleWords(entry.lowerTitle), entry.lowerType].some((part) =>
    [0, 1].some((extra) => withinOneEdit(word, part.slice(0, word.length + extra))));
}

/**
 * Optimal-string-alignment distance <= 1 (Damerau: a swap of neighbours is one edit).
 * @param {string} a @param {string} b
 */
export function withinOneEdit(a, b) {
  if (a === b) return true;
  if (Math.abs(a.length - b.length) > 1) return false;
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  if (a.length === b.length) {
    if (a.slice(i + 1) === b.slice(i + 1)) return true; // one letter changed
    return a[i] === b[i + 1] && a[i + 1] === b[i] && a.slice(i + 2) === b.slice(i + 2); // two swapped
  }
  const [shorter, longer] = a.length < b.length ? [a, b] : [b, a];
  return shorter.slice(i) === longer.slice(i + 1); // one letter added or dropped
}

/**
 * 0 without a filter; -1 when the type has no compatible socket; 10 for an exact socket type,
 * 0 for a wildcard one.
 * @param {SearchEntry} entry @param {{input: string | null, output: string | null}} filter
 */
function socketMatch(entry, filter) {
  const wanted = filter.input ?? filter.output;
  if (wanted == null) return 0;
  const sockets = filter.input != null ? entry.inputs : entry.outputs;
  let best = -1;
  for (const socket of sockets) {
    const valid = filter.input != null ? LiteGraph.isValidConnection(wanted, socket)
      : LiteGraph.isValidConnection(socket, wanted);
    if (!valid) continue;
    best = Math.max(best, socket === "*" || wanted === "*" ? 0 : 10);
  }
  return best;
}

/**
 * Show each result's category next to it, and its type only where that says more than its name.
 * @param {HTMLElement} helper @param {any} app
 */
function labelCategories(helper, app) {
  for (const item of helper.querySelectorAll(".lite-search-item")) {
    if (item.querySelector(".app-search-category")) continue;
    const type = unescape(String(/** @type {HTMLElement} */ (item).dataset.type ?? ""));
    if (LiteGraph.registered_node_types[type]?.title === type) item.querySelector(".lite-search-item-type")?.remove();
    const category = LiteGraph.registered_node_types[type]?.category || app.nodeDefs[type]?.category;
    if (!category) continue;
    const label = document.createElement("span");
    label.className = "app-search-category";
    label.textContent = category;
    item.append(label);
  }
}

/**
 * Fill litegraph's socket-type registries from the schema, so its own type-filtered menus (if
 * anything opens them) know which node types take or give each type.
 * @param {Record<string, any>} nodeDefs
 */
function registerSlotTypes(nodeDefs) {
  /** @type {Record<string, string[]>} */ const takers = {};
  /** @type {Record<string, string[]>} */ const givers = {};
  const sorted = Object.entries(nodeDefs).sort(([, a], [, b]) =>
    String(a.display_name || a.name).localeCompare(String(b.display_name || b.name)));
  for (const [type, def] of sorted) {
    const owner = { constructor: { type } }; // registerNodeAndSlotType reads constructor.type
    for (const spec of inputSpecs(def)) {
      if (isWidgetInput(spec)) continue;
      const slotType = socketType(spec);
      LiteGraph.registerNodeAndSlotType(owner, slotType);
      (takers[slotType] ??= []).push(type);
    }
    for (const output of def.output ?? []) {
      const slotType = Array.isArray(output) ? "COMBO" : String(output);
      LiteGraph.registerNodeAndSlotType(owner, slotType, true);
      (givers[slotType] ??= []).push(type);
    }
  }
  for (const [slotType, types] of Object.entries(takers)) {
    LiteGraph.slot_types_default_out[slotType] = [...new Set(types)].slice(0, DEFAULTS_PER_TYPE);
  }
  for (const [slotType, types] of Object.entries(givers)) {
    LiteGraph.slot_types_default_in[slotType] = [...new Set(types)].slice(0, DEFAULTS_PER_TYPE);
  }
}

// ---------------------------------------------------------------------------------------------
// Canvas menu

/** @param {any} app */
function installCanvasMenu(app) {
  const canvas = app.canvas;
  canvas.getExtraMenuOptions = (/** @type {any} */ _canvas, /** @type {any[]} */ options) => {
    // Subgraph editing has no way back to the root graph in Flowmill's UI yet.
    for (let index = options.length - 1; index >= 0; index--) {
      if (String(options[index]?.content ?? "").startsWith("Convert to Subgraph")) options.splice(index, 1);
    }
    const position = [canvas.graph_mouse[0], canvas.graph_mouse[1]];
    const link = linkAt(canvas, position);
    const extra = [null];
    if (Object.keys(canvas.selected_nodes).length) {
      extra.push({ content: "Add Group for Selected Nodes (Ctrl+G)", callback: () => groupSelected(app) });
    }
    extra.push({
      content: link ? "Add Reroute" : "Add Reroute (right-click a link)",
      disabled: !link,
      callback: () => {
        canvas.graph.createReroute(position, link);
        canvas.setDirty(true, true);
        app.markChanged();
      },
    });
    return extra;
  };
}

/**
 * The rendered link (or link segment) under a graph position, if any.
 * @param {any} canvas @param {number[]} position
 */
function linkAt(canvas, position) {
  const { ctx } = canvas;
  const lineWidth = ctx.lineWidth;
  const transform = ctx.getTransform();
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.lineWidth = canvas.connections_width + 10;
  try {
    for (const segment of canvas.renderedPaths) {
      if (segment.path && ctx.isPointInStroke(segment.path, position[0], position[1])) return segment;
    }
    return null;
  } finally {
    ctx.lineWidth = lineWidth;
    ctx.setTransform(transform);
  }
}

/** Put the selected nodes in a new group that fits them. @param {any} app */
function groupSelected(app) {
  const { canvas, graph } = app;
  const nodes = Object.values(canvas.selected_nodes);
  if (!nodes.length) return false;
  const group = new LGraphGroup("Group");
  graph.add(group);
  group.resizeTo(nodes, 10);
  group.recomputeInsideNodes();
  canvas.setDirty(true, true);
  app.markChanged();
  return true;
}

// ---------------------------------------------------------------------------------------------
// Shortcuts and buttons

/** @param {EventTarget | null} target */
function isTyping(target) {
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

/** @param {any} app */
function installShortcuts(app) {
  const { canvas } = app;
  const selected = () => Object.values(canvas.selected_nodes);
  const setMode = (/** @type {number} */ mode) => {
    if (app.nodes.toggleMode(selected(), mode)) app.markChanged();
  };
  const collapse = () => {
    const nodes = selected().filter((node) => node.collapsible);
    for (const node of nodes) node.collapse();
    if (nodes.length) app.markChanged();
  };
  window.addEventListener("keydown", (event) => {
    if (isTyping(event.target)) return;
    const ctrl = event.ctrlKey || event.metaKey;
    const key = event.key.toLowerCase();
    // The canvas handles Delete / Ctrl+C / Ctrl+V itself when focused; elsewhere (after a toolbar
    // click) they still act on the canvas selection.
    const offCanvas = event.target !== canvas.canvas;
    /** @type {(() => void) | null} */
    let action = null;
    if (ctrl && !event.altKey && key === "z") action = event.shiftKey ? () => app.undo?.redo() : () => app.undo?.undo();
    else if (ctrl && !event.altKey && key === "y") action = () => app.undo?.redo();
    else if (ctrl && !event.altKey && key === "b") action = () => setMode(BYPASSED);
    else if (ctrl && !event.altKey && key === "m") action = () => setMode(MUTED);
    else if (ctrl && !event.altKey && key === "g") action = () => groupSelected(app);
    else if (event.altKey && !ctrl && event.code === "KeyC") action = collapse;
    else if (event.key === "Escape" && canvas.subgraph) action = () => canvas.setGraph(app.graph);
    else if (offCanvas && !ctrl && event.key === "Delete") {
      if (selected().length) action = () => canvas.deleteSelected();
    } else if (offCanvas && ctrl && key === "c" && selected().length) action = () => canvas.copyToClipboard();
    else if (offCanvas && ctrl && key === "v") {
      action = () => canvas.pasteFromClipboard({ connectInputs: event.shiftKey });
    }
    if (!action) return;
    event.preventDefault();
    action();
    canvas.setDirty(true, true);
  });
}

/** Wire #undo-button / #redo-button and keep their disabled state current. @param {any} app */
function installHistoryButtons(app) {
  const undoButton = /** @type {HTMLButtonElement | null} */ (document.getElementById("undo-button"));
  const redoButton = /** @type {HTMLButtonElement | null} */ (document.getElementById("redo-button"));
  undoButton?.addEventListener("click", () => app.undo?.undo());
  redoButton?.addEventListener("click", () => app.undo?.redo());
  app.addEventListener("history", (/** @type {any} */ event) => {
    if (undoButton) undoButton.disabled = !event.detail.canUndo;
    if (redoButton) redoButton.disabled = !event.detail.canRedo;
  });
}
