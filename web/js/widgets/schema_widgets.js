// @ts-check
/**
 * Canvas widgets for the widget inputs of an /object_info schema: INT/FLOAT -> number (or slider
 * with `display: "slider"`), a list or ["COMBO", {options}] -> combo, STRING -> text, BOOLEAN ->
 * toggle. Multiline STRING is handed to the caller's factory (a DOM textarea, multiline.js).
 *
 * What counts as a widget must agree with the server's converter (engine/convert.py `_as_widget`):
 * it names positional `widgets_values` by the same rule, so the order and the set of widgets here
 * decide what the server reads.
 */

export const SCALAR_WIDGET_TYPES = new Set(["INT", "FLOAT", "STRING", "BOOLEAN"]);

/**
 * @typedef {object} InputSpec
 * @property {string} name
 * @property {any} type          a type name, or a list of combo values
 * @property {Record<string, any>} options
 * @property {boolean} optional
 */

/**
 * The node's input specs in canvas order: required then optional, each in `input_order`.
 * @param {any} def  one /object_info entry
 * @returns {InputSpec[]}
 */
export function inputSpecs(def) {
  const specs = [];
  for (const section of ["required", "optional"]) {
    const entries = def?.input?.[section] || {};
    const order = def?.input_order?.[section] || Object.keys(entries);
    for (const name of order) {
      const raw = entries[name];
      if (!Array.isArray(raw) || raw.length === 0) continue;
      const options = raw[1] && typeof raw[1] === "object" && !Array.isArray(raw[1]) ? raw[1] : {};
      specs.push({ name, type: raw[0], options, optional: section === "optional" });
    }
  }
  return specs;
}

/** @param {InputSpec} spec @returns {any[] | null} the combo's values, or null for other kinds */
export function comboValues(spec) {
  if (Array.isArray(spec.type)) return spec.type;
  if (spec.type === "COMBO") return Array.isArray(spec.options.options) ? spec.options.options : [];
  return null;
}

/** @param {InputSpec} spec  true when the input is edited by a widget rather than a socket */
export function isWidgetInput(spec) {
  if (spec.options.forceInput) return false;
  return comboValues(spec) !== null || SCALAR_WIDGET_TYPES.has(spec.type);
}

/** @param {InputSpec} spec  the socket type of the input (combos link as "COMBO", as in ComfyUI) */
export function socketType(spec) {
  return comboValues(spec) !== null ? "COMBO" : String(spec.type);
}

/**
 * Add the widget for one widget input.
 * @param {any} node  an LGraphNode
 * @param {InputSpec} spec
 * @param {(node: any, spec: InputSpec) => any} addMultiline  factory for multiline STRING inputs
 * @param {(widget: any) => void} onChange  called after the user changed the value
 * @returns {any} the widget
 */
export function addSchemaWidget(node, spec, addMultiline, onChange) {
  const options = spec.options;
  const choices = comboValues(spec);
  let widget;
  if (choices !== null) {
    const initial = options.default ?? choices[0] ?? "";
    widget = node.addWidget("combo", spec.name, initial, function () { onChange(this); }, { values: choices });
  } else if (spec.type === "INT" || spec.type === "FLOAT") {
    widget = addNumberWidget(node, spec, onChange);
  } else if (spec.type === "BOOLEAN") {
    widget = node.addWidget("toggle", spec.name, Boolean(options.default ?? false), function () { onChange(this); },
      { on: options.label_on, off: options.label_off });
  } else if (options.multiline) {
    widget = addMultiline(node, spec);
  } else {
    widget = node.addWidget("text", spec.name, String(options.default ?? ""), function () { onChange(this); },
      { placeholder: options.placeholder });
  }
  widget.socketType = socketType(spec);
  if (options.tooltip) widget.tooltip = options.tooltip;
  if (options.advanced) widget.advanced = true;
  return widget;
}

/**
 * Number or slider widget. litegraph steps by `step2` (or a tenth of `step`, its legacy unit);
 * values are rounded after every change: INT to whole numbers, FLOAT to `round` (or the step's
 * precision) so dragging never leaves 0.30000000000000004 behind.
 * @param {any} node @param {InputSpec} spec @param {(widget: any) => void} onChange
 */
function addNumberWidget(node, spec, onChange) {
  const options = spec.options;
  const isInt = spec.type === "INT";
  const step = positive(options.step) ?? (isInt ? 1 : 0.01);
  const round = isInt ? 1 : options.round === false ? 0 : positive(options.round) ?? 10 ** -decimals(step);
  const precision = isInt ? 0 : options.precision ?? Math.min(6, decimals(round || step));
  const min = finite(options.min);
  const max = finite(options.max);
  const slider = options.display === "slider" && min !== undefined && max !== undefined;
  const widgetOptions = { min, max, step: step * 10, step2: step, precision, round };
  const initial = normaliseNumber(Number(options.default ?? min ?? 0), widgetOptions);
  return node.addWidget(slider ? "slider" : "number", spec.name, initial, function (/** @type {number} */ value) {
    const normalised = normaliseNumber(value, this.options);
    if (normalised !== this.value) this.value = normalised;
    onChange(this);
  }, widgetOptions);
}

/**
 * @param {number} value
 * @param {{min?: number, max?: number, round?: number}} options
 */
export function normaliseNumber(value, options) {
  let result = Number.isFinite(value) ? value : options.min ?? 0;
  if (options.round) {
    const rounded = Math.round(result / options.round) * options.round;
    result = Number(rounded.toFixed(decimals(options.round))); // drops binary noise like 0.30000000000000004
  }
  if (options.min !== undefined && result < options.min) result = options.min;
  if (options.max !== undefined && result > options.max) result = options.max;
  return result;
}

/** @param {number} value  how many decimals the number is written with (0.01 -> 2, 1e-7 -> 7) */
function decimals(value) {
  const text = String(value);
  const exponent = /e-(\d+)$/.exec(text);
  if (exponent) return Number(exponent[1]) + (text.split("e")[0].split(".")[1]?.length ?? 0);
  return text.split(".")[1]?.length ?? 0;
}

/** @param {any} value */
function positive(value) {
  return typeof value === "number" && value > 0 ? value : undefined;
}

/** @param {any} value */
function finite(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}
