// @ts-check
/**
 * Draws an API-format prompt ({id: {class_type, inputs}}) as a canvas workflow.
 *
 * An API prompt has no positions, sockets or widget order, so the canvas file is rebuilt from the
 * server's /object_info: sockets in schema order, a link per `[node, slot]` input (a linked widget
 * becomes a widget input), and widget values applied by *name* once the node classes exist, which
 * keeps this independent of how each widget serializes. Nodes are then placed in a left-to-right
 * layered layout: a node's column is the longest chain of links leading to it. Pure functions of
 * their arguments; the caller configures the graph.
 */

const WIDGET_KINDS = new Set(["INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"]);
const COLUMN_GAP = 80;
const ROW_GAP = 40;
const MARGIN = 40;

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
 * @returns {{workflow: any, finish: (graph: any, titleHeight?: number) => void}}
 *   configure `workflow`, then call `finish(graph, LiteGraph.NODE_TITLE_HEIGHT)`
 */
export function apiPromptToWorkflow(prompt, nodeDefs) {
  const apiIds = Object.keys(prompt);
  const ids = canvasIds(apiIds);
  /** @type {any[]} */
  const links = [];
  /** @type {Map<number, any>} */
  const nodes = new Map();
  /** @type {Map<number, Record<string, any>>} widget values to set by name after configure */
  const widgetValues = new Map();

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
    const values = /** @type {Record<string, any>} */ ({});
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
    widgetValues.set(node.id, values);
  }

  const workflow = {
    last_node_id: Math.max(0, ...nodes.keys()), last_link_id: links.length,
    nodes: [...nodes.values()], links, groups: [], config: {}, extra: {}, version: 0.4,
  };
  return {
    workflow,
    finish(graph, titleHeight = 30) {
      for (const [id, values] of widgetValues) {
        const node = graph.getNodeById(id);
        for (const widget of node?.widgets || []) {
          if (widget.name in values) widget.value = values[widget.name];
        }
      }
      layoutLayered(graph, links, titleHeight);
    },
  };
}

/**
 * Place nodes left to right by link depth; within a column, near the average row of their sources.
 * @param {any} graph  a configured LGraph
 * @param {any[]} links  [id, from, fromSlot, to, toSlot, type]
 * @param {number} titleHeight  LiteGraph.NODE_TITLE_HEIGHT: a node's title sits above its pos
 */
export function layoutLayered(graph, links, titleHeight = 30) {
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
  const columns = [];
  for (const node of nodes) (columns[/** @type {number} */ (depth.get(node.id))] ||= []).push(node);
  const row = new Map();
  let x = MARGIN;
  for (const column of columns.filter(Boolean)) {
    /** Average row of the node's sources; nodes without placed sources go last, by id. @param {any} node */
    const key = (node) => {
      const sources = links.filter((link) => link[3] === node.id && row.has(link[1])).map((link) => row.get(link[1]));
      return sources.length ? sources.reduce((a, b) => a + b, 0) / sources.length : Number.MAX_SAFE_INTEGER;
    };
    column.sort((a, b) => key(a) - key(b) || a.id - b.id);
    let y = MARGIN + titleHeight;
    let width = 0;
    column.forEach((node, index) => {
      node.pos = [x, y];
      row.set(node.id, index);
      y += node.size[1] + titleHeight + ROW_GAP;
      width = Math.max(width, node.size[0]);
    });
    x += width + COLUMN_GAP;
  }
  graph.setDirtyCanvas?.(true, true);
}
