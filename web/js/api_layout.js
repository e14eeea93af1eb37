// @ts-check
/**
 * Draws an API-format prompt ({id: {class_type, inputs}}) as a canvas workflow.
 *
 * An API prompt has no positions, sockets or widget order, so the canvas file is rebuilt from the
 * server's /object_info: sockets in schema order, a link per `[node, slot]` input (a linked widget
 * becomes a widget input), and widget values given by *name* (a `widgets_values` object, which the
 * node classes read while they are configured, so a LoadImage previews the file its widget names),
 * which keeps this independent of how each widget serializes. An API prompt carries no
 * control_after_generate state, only the seeds it ran with: every control is set to `fixed`, so the
 * prompt re-runs as written and a re-queue hits the server's cache. Nodes are then placed in a
 * left-to-right layered layout (a node's column is the longest chain of links leading to it),
 * wrapped into bands when that makes the graph fit the view bigger. Pure functions of their
 * arguments; the caller configures the graph.
 */

/** @typedef {{width: number, height: number}} ViewSize  CSS pixels */

const WIDGET_KINDS = new Set(["INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"]);
const COLUMN_GAP = 80;
const ROW_GAP = 40;
const BAND_GAP = 80;
const MARGIN = 40;
/** The largest zoom a fitted view uses (workflow_io.js): a small graph stays at its natural size. */
export const MAX_FIT_SCALE = 1;
/** A zoom at which litegraph's text (drawn from 0.6) is comfortable to read. */
const READABLE_SCALE = 0.7;
/** The picture area given to image output nodes (run_display.js grows nodes to 160-320 for images). */
const IMAGE_ROOM_MIN = 160;
const IMAGE_ROOM_MAX = 320;
/** The named value that sets every control_after_generate widget of a node (nodes.js reads it). */
const CONTROL_KEY = "control_after_generate";

/** @param {any} value  an API input value */
function isLink(value) {
  return Array.isArray(value) && value.length === 2 && (typeof value[0] === "string" || typeof value[0] === "number")
    && Number.isInteger(value[1]);
}

/** The literal an API input carries; lists travel boxed as {"__value__": [...]}. @param {any} value */
function unwrap(value) {
  return value && typeof value === "object" && !Array.isArray(value) && "__value__" in value ? value.__value__ : value;
}

/**
 * The schema's inputs in canvas order, each with its socket type and whether it is a widget.
 * @param {any} def  one /object_info entry
 * @returns {{name: string, type: string, widget: boolean}[]}
 */
function schemaInputs(def) {
  const sections = def?.input || {};
  const order = def?.input_order || {};
  const result = [];
  for (const section of ["required", "optional"]) {
    const entries = sections[section] || {};
    for (const name of order[section] || Object.keys(entries)) {
      const spec = entries[name];
      if (!Array.isArray(spec)) continue;
      const kind = spec[0];
      const options = spec[1] && typeof spec[1] === "object" ? spec[1] : {};
      const isCombo = Array.isArray(kind) || kind === "COMBO";
      const widget = (isCombo || WIDGET_KINDS.has(kind)) && !options.forceInput;
      result.push({ name, type: isCombo ? "COMBO" : String(kind), widget });
    }
  }
  return result;
}

/**
 * Canvas ids for the prompt's ids: kept when they are all whole numbers, else numbered from 1.
 * @param {string[]} apiIds
 * @returns {Map<string, number>}
 */
function canvasIds(apiIds) {
  const numeric = apiIds.every((id) => /^\d+$/.test(id) && Number(id) > 0);
  return new Map(apiIds.map((id, index) => [id, numeric ? Number(id) : index + 1]));
}

/**
 * Build a canvas workflow (LiteGraph v0.4) for an API prompt.
 * @param {Record<string, any>} prompt
 * @param {Record<string, any>} nodeDefs  the server's /object_info
 * @returns {{workflow: any, finish: (graph: any, titleHeight?: number, view?: ViewSize | null) => void}}
 *   configure `workflow`, then call `finish(graph, LiteGraph.NODE_TITLE_HEIGHT, {width, height})` with
 *   the size of the canvas area the graph will be fitted into
 */
export function apiPromptToWorkflow(prompt, nodeDefs) {
  const apiIds = Object.keys(prompt);
  const ids = canvasIds(apiIds);
  /** @type {any[]} */
  const links = [];
  /** @type {Map<number, any>} */
  const nodes = new Map();

  for (const apiId of apiIds) {
    const entry = prompt[apiId];
    const def = nodeDefs[entry.class_type];
    const outputs = (def?.output || []).map((type, slot) => ({
      name: def.output_name?.[slot] || String(type), type: Array.isArray(type) ? "COMBO" : String(type),
      links: [], slot_index: slot }));
    const title = entry._meta?.title;
    nodes.set(/** @type {number} */ (ids.get(apiId)), {
      id: ids.get(apiId), type: entry.class_type, pos: [0, 0], flags: {}, order: 0, mode: 0,
      inputs: [], outputs, properties: {}, ...(title && title !== def?.display_name ? { title } : {}) });
  }

  for (const apiId of apiIds) {
    const entry = prompt[apiId];
    const node = nodes.get(/** @type {number} */ (ids.get(apiId)));
    const values = /** @type {Record<string, any>} */ ({ [CONTROL_KEY]: "fixed" });
    const given = entry.inputs && typeof entry.inputs === "object" ? entry.inputs : {};
    const known = schemaInputs(nodeDefs[entry.class_type]);
    const names = new Set(known.map((input) => input.name));
    // Inputs the schema does not know (an unknown node type) still keep their links.
    const extra = Object.keys(given).filter((name) => !names.has(name) && isLink(given[name]))
      .map((name) => ({ name, type: "*", widget: false }));
    for (const input of [...known, ...extra]) {
      const value = given[input.name];
      if (!isLink(value)) {
        if (input.widget && value !== undefined) values[input.name] = unwrap(value);
        else if (!input.widget) node.inputs.push({ name: input.name, type: input.type, link: null });
        continue;
      }
      const source = nodes.get(/** @type {number} */ (ids.get(String(value[0]))));
      const output = source?.outputs[value[1]];
      const slot = { name: input.name, type: input.type, link: /** @type {number | null} */ (null),
                     ...(input.widget ? { widget: { name: input.name } } : {}) };
      if (source && output) {
        const linkId = links.length + 1;
        slot.link = linkId;
        output.links.push(linkId);
        links.push([linkId, source.id, value[1], node.id, node.inputs.length, output.type]);
      } else if (source) {
        // A link to an output the schema does not list (unknown source type): add the socket.
        while (source.outputs.length <= value[1]) {
          source.outputs.push({ name: "*", type: "*", links: [], slot_index: source.outputs.length });
        }
        const linkId = links.length + 1;
        slot.link = linkId;
        source.outputs[value[1]].links.push(linkId);
        links.push([linkId, source.id, value[1], node.id, node.inputs.length, "*"]);
      }
      if (slot.link !== null || !input.widget) node.inputs.push(slot);
    }
    // By name: nodes.js applies a values object by widget name. A type the server lacks has no
    // widgets to give values to (its placeholder keeps what the file had, here nothing).
    if (nodeDefs[entry.class_type]) node.widgets_values = values;
  }

  const workflow = {
    last_node_id: Math.max(0, ...nodes.keys()), last_link_id: links.length,
    nodes: [...nodes.values()], links, groups: [], config: {}, extra: {}, version: 0.4,
  };
  return {
    workflow,
    finish(graph, titleHeight = 30, view = null) {
      for (const node of graph._nodes) makeRoomForImages(node, nodeDefs[node.type]);
      layoutLayered(graph, links, titleHeight, view);
    },
  };
}

/**
 * An output node that shows images (Save Image, Preview Image) gets its picture area now, as
 * canvas templates have it: grown only once the first image arrives, it would reach past the
 * fitted view (and push the layout's next row) exactly when the run's result appears.
 * @param {any} node @param {any} def  its /object_info entry
 */
function makeRoomForImages(node, def) {
  if (!def?.output_node || !schemaInputs(def).some((input) => input.type === "IMAGE")) return;
  const [width, height] = node.size;
  const picture = Math.min(IMAGE_ROOM_MAX, Math.max(IMAGE_ROOM_MIN, width));
  node.setSize([width, height + picture]);
}

/**
 * Place nodes left to right by link depth; within a column, near the average row of their sources.
 * A long chain of columns is wrapped into bands, one under the other, when that lets the view
 * show the whole graph at a larger scale (a sampler chain 2,400 px wide would otherwise be fitted
 * below litegraph's 0.6x zoom, where it stops drawing text).
 * @param {any} graph  a configured LGraph
 * @param {any[]} links  [id, from, fromSlot, to, toSlot, type]
 * @param {number} titleHeight  LiteGraph.NODE_TITLE_HEIGHT: a node's title sits above its pos
 * @param {ViewSize | null} [view]  the area the graph will be fitted into; null keeps one band
 */
export function layoutLayered(graph, links, titleHeight = 30, view = null) {
  const nodes = [...graph._nodes];
  const depth = new Map(nodes.map((node) => [node.id, 0]));
  // Longest-path layering by relaxation; a cycle cannot loop forever: at most one pass per node.
  for (let pass = 0; pass < nodes.length; pass++) {
    let moved = false;
    for (const [, from, , to] of links) {
      const next = (depth.get(from) ?? 0) + 1;
      if (next > (depth.get(to) ?? 0)) {
        depth.set(to, next);
        moved = true;
      }
    }
    if (!moved) break;
  }
  /** @type {any[][]} */
  const layers = [];
  for (const node of nodes) (layers[/** @type {number} */ (depth.get(node.id))] ||= []).push(node);
  const columns = layers.filter(Boolean);
  const row = new Map();
  for (const column of columns) {
    /** Average row of the node's sources; nodes without placed sources go last, by id. @param {any} node */
    const key = (node) => {
      const sources = links.filter((link) => link[3] === node.id && row.has(link[1])).map((link) => row.get(link[1]));
      return sources.length ? sources.reduce((a, b) => a + b, 0) / sources.length : Number.MAX_SAFE_INTEGER;
    };
    column.sort((a, b) => key(a) - key(b) || a.id - b.id);
    column.forEach((node, index) => row.set(node.id, index));
  }
  const boxes = columns.map((column) => ({
    width: Math.max(...column.map((node) => node.size[0])),
    height: column.reduce((sum, node) => sum + node.size[1] + titleHeight, 0) + ROW_GAP * (column.length - 1),
  }));
  let top = MARGIN;
  for (const band of splitIntoBands(boxes, view)) {
    let x = MARGIN;
    let bandHeight = 0;
    for (const index of band) {
      let y = top + titleHeight;
      for (const node of columns[index]) {
        node.pos = [x, y];
        y += node.size[1] + titleHeight + ROW_GAP;
      }
      x += boxes[index].width + COLUMN_GAP;
      bandHeight = Math.max(bandHeight, boxes[index].height);
    }
    top += bandHeight + BAND_GAP;
  }
  graph.setDirtyCanvas?.(true, true);
}

/**
 * Consecutive runs of column indices, one per band: the fewest bands (of about equal width) that
 * `view` shows at READABLE_SCALE or more, since every wrap sends links back across the graph;
 * when no count reaches it, the count that shows the graph largest (up to MAX_FIT_SCALE).
 * @param {{width: number, height: number}[]} boxes  each column's size
 * @param {ViewSize | null} view
 * @returns {number[][]}
 */
export function splitIntoBands(boxes, view) {
  const all = boxes.map((_, index) => index);
  if (!view || !(view.width > 0 && view.height > 0) || boxes.length < 2) return [all];
  const total = boxes.reduce((sum, box) => sum + box.width, 0) + COLUMN_GAP * (boxes.length - 1);
  let best = [all];
  let bestScale = 0;
  for (let count = 1; count <= boxes.length; count++) {
    const limit = total / count;
    /** @type {number[][]} */
    const bands = [[]];
    let width = 0;
    for (const index of all) {
      const band = bands[bands.length - 1];
      const added = (band.length ? COLUMN_GAP : 0) + boxes[index].width;
      // Close the band once it is full; the last band takes whatever is left.
      if (band.length && width + added / 2 > limit && bands.length < count) {
        bands.push([index]);
        width = boxes[index].width;
      } else {
        band.push(index);
        width += added;
      }
    }
    const bandWidths = bands.map((band) => band.reduce((sum, index) => sum + boxes[index].width, 0)
      + COLUMN_GAP * (band.length - 1));
    const bandHeights = bands.map((band) => Math.max(...band.map((index) => boxes[index].height)));
    const boxWidth = Math.max(...bandWidths);
    const height = bandHeights.reduce((sum, h) => sum + h, 0) + BAND_GAP * (bands.length - 1);
    const scale = Math.min(view.width / (boxWidth + 2 * MARGIN), view.height / (height + 2 * MARGIN), MAX_FIT_SCALE);
    if (scale >= READABLE_SCALE) return bands;
    if (scale > bestScale * 1.001) {
      best = bands;
      bestScale = scale;
    }
  }
  return best;
}
