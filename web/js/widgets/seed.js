// @ts-check
/**
 * ComfyUI's `control_after_generate`: a combo widget placed right after a seed-like INT (or a
 * flagged combo) that says what happens to that value after each queued prompt: fixed, increment,
 * decrement or randomize. Its value is serialized into `widgets_values` right after the value it
 * controls, exactly where ComfyUI writes it and where engine/convert.py skips it.
 */

export const CONTROL_WIDGET_NAME = "control_after_generate";
export const CONTROL_VALUES = ["fixed", "increment", "decrement", "randomize"];
/** Random seeds stay below 2^50 so every value is exact in a JavaScript number (as in ComfyUI). */
const RANDOM_LIMIT = 2 ** 50;
const SEED_NAMES = new Set(["seed", "noise_seed"]);

/**
 * Whether an input gets a control widget: a flag in its options, or (ComfyUI's older rule) an
 * INT named seed or noise_seed.
 * @param {import("./schema_widgets.js").InputSpec} spec
 */
export function wantsControl(spec) {
  const flag = spec.options.control_after_generate;
  if (flag !== undefined && flag !== null) return flag !== false;
  return spec.type === "INT" && SEED_NAMES.has(spec.name);
}

/**
 * Add the control combo after `target`.
 * @param {any} node
 * @param {any} target  the number or combo widget it controls
 * @param {import("./schema_widgets.js").InputSpec} spec
 * @param {(widget: any) => void} onChange
 */
export function addControlWidget(node, target, spec, onChange) {
  const flag = spec.options.control_after_generate;
  const initial = CONTROL_VALUES.includes(flag) ? flag : "randomize";
  const control = node.addWidget("combo", CONTROL_WIDGET_NAME, initial, function () { onChange(this); },
    { values: CONTROL_VALUES });
  control.controls = target; // no socketType: it is not a server input, so it never becomes one
  target.linkedWidgets = [control];
  return control;
}

/**
 * Apply one control widget to its target once. Returns true when the value changed.
 * @param {any} control
 * @param {() => number} random  uniform in [0, 1)
 */
export function applyControl(control, random = Math.random) {
  const target = control.controls;
  const mode = control.value;
  if (!target || mode === "fixed" || !CONTROL_VALUES.includes(mode)) return false;
  const before = target.value;
  const values = target.options?.values;
  if (Array.isArray(values)) {
    target.value = nextChoice(values, before, mode, random);
  } else {
    target.value = nextNumber(target.options || {}, Number(before), mode, random);
  }
  return target.value !== before;
}

/** @param {any[]} values @param {any} current @param {string} mode @param {() => number} random */
function nextChoice(values, current, mode, random) {
  if (values.length === 0) return current;
  const index = values.indexOf(current);
  if (mode === "randomize") return values[Math.floor(random() * values.length)];
  const offset = mode === "increment" ? 1 : -1;
  return values[(Math.max(index, 0) + offset + values.length) % values.length];
}

/**
 * @param {{min?: number, max?: number, step2?: number, step?: number}} options
 * @param {number} current @param {string} mode @param {() => number} random
 */
function nextNumber(options, current, mode, random) {
  const step = options.step2 || (options.step || 10) * 0.1;
  const min = options.min ?? 0;
  const max = options.max ?? RANDOM_LIMIT;
  if (mode === "randomize") {
    const low = Math.max(min, -RANDOM_LIMIT);
    const high = Math.min(max, RANDOM_LIMIT);
    const choices = Math.floor((high - low) / step) + 1;
    return low + Math.floor(random() * choices) * step;
  }
  const next = current + (mode === "increment" ? step : -step);
  return Math.min(max, Math.max(min, next));
}
