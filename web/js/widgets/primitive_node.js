// @ts-check
/**
 * ComfyUI's legacy frontend "PrimitiveNode": a canvas-only node whose one output ("connect to widget
 * input", type "*") plugs into a widget that was converted to an input. Once connected, the output
 * takes the target input's type and the node grows a "value" widget built from the target input's
 * schema (a number gets a control_after_generate combo, "fixed" unless the input asks otherwise), so
 * one value can drive several nodes. Files store it as `widgets_values: [value, control, ...]`.
 *
 * The server never sees the node: engine/convert.py replaces each link from it by its
 * `widgets_values[0]`, so what the canvas serializes is what runs. The value is also copied into
 * the target widgets (greyed out while linked), so the canvas shows what will run there, and the
 * control is applied after each queued prompt like any seed control.
 *
 * A file's PrimitiveNode is built when its graph has finished configuring (its targets' converted
 * inputs exist only then); until a target is known the saved values are kept as they are, so saving
 * loses nothing. Must not import the app modules; nodes.js registers it.
 */
import { LGraphNode, LiteGraph } from "../../vendor/litegraph/litegraph.es.js";
import { addMultilineWidget } from "./multiline.js";
import { addSchemaWidget, comboValues, inputSpecs } from "./schema_widgets.js";
import { CONTROL_VALUES, addControlWidget, wantsControl } from "./seed.js";

export const PRIMITIVE_TYPE = "PrimitiveNode";
const UNCONNECTED_NAME = "connect to widget input";
const REPLACE_PROPERTY = "Run widget replace on values";

/**
 * @typedef {object} PrimitiveServices
 * @property {any} app
 * @property {(delayMs?: number) => void} changedSoon
 * @property {import("./multiline.js").MultilineHooks} multiline
 */

/**
 * The schema spec of the widget a link target input stands for, from the server's definition of
 * the target node, else from the target widget itself.
 * @param {any} app @param {any} node @param {any} input @param {any} widget
 * @returns {import("./schema_widgets.js").InputSpec}
 */
function targetSpec(app, node, input, widget) {
  const def = app.nodeDefs?.[node.type];
  const spec = def ? inputSpecs(def).find((candidate) => candidate.name === widget.name) : undefined;
  if (spec) return spec;
  const options = widget.options ?? {};
  if (Array.isArray(options.values)) {
    return { name: widget.name, type: [...options.values], options: {}, optional: false };
  }
  const type = String(input.type);
  const numeric = { min: options.min, max: options.max, step: options.step2, round: options.round };
  return { name: widget.name, type, options: type === "INT" || type === "FLOAT" ? numeric : {}, optional: false };
}

/** A spec for a value whose target is unknown (a missing node type): its JSON type decides. @param {any} value */
function specFromValue(value) {
  const type = typeof value === "number" ? (Number.isInteger(value) ? "INT" : "FLOAT")
    : typeof value === "boolean" ? "BOOLEAN" : "STRING";
  return { name: "value", type, options: {}, optional: false };
}

/**
 * Register the PrimitiveNode type; returns its type name.
 * @param {PrimitiveServices} services
 */
export function registerPrimitiveNode(services) {
  const { app } = services;
  /** While a graph is being configured, connection callbacks must not build widgets yet. */
  const loading = { configuring: false };

  class PrimitiveNode extends LGraphNode {
    static title = "Primitive";
    static description = "One value for the widget inputs it is linked to";

    /** @param {string} [title] */
    constructor(title) {
      super(title ?? "Primitive", PRIMITIVE_TYPE);
      this.addOutput(UNCONNECTED_NAME, "*");
      this.serialize_widgets = true;
      this.properties = { [REPLACE_PROPERTY]: false };
      /** @type {any[] | null} a file's widgets_values, kept until the widgets exist */
      this.savedValues = null;
    }

    /** @param {any} info */
    onConfigure(info) {
      this.savedValues = Array.isArray(info.widgets_values) ? structuredClone(info.widgets_values) : null;
      if (!loading.configuring) this.build(); // pasted or cloned on its own: build now
    }

    /** @param {any} data */
    onSerialize(data) {
      if (!this.widgets?.length && this.savedValues) data.widgets_values = structuredClone(this.savedValues);
    }

    /** The linked inputs that stand for widgets: [{node, input, widget}]. */
    targets() {
      const graph = this.graph;
      const found = [];
      for (const linkId of this.outputs[0]?.links ?? []) {
        const link = graph?.links?.get?.(linkId) ?? graph?.links?.[linkId];
        const node = link && graph.getNodeById(link.target_id);
        const input = node?.inputs?.[link.target_slot];
        const name = input?.widget?.name;
        const widget = name && node.widgets?.find((/** @type {any} */ candidate) => candidate.name === name);
        if (widget) found.push({ node, input, widget });
      }
      return found;
    }

    /** Create the widgets for the first target (or from the saved values when none is known). */
    build() {
      if (this.widgets?.length) return;
      const [target] = this.targets();
      if (target) {
        const spec = targetSpec(app, target.node, target.input, target.widget);
        const output = this.outputs[0];
        output.type = target.input.type;
        output.name = String(target.input.type);
        output.widget = { name: target.widget.name };
        this.addValueWidgets(spec, this.savedValues ?? [target.widget.value]);
      } else if (this.savedValues?.length && this.outputs[0]?.links?.length) {
        this.addValueWidgets(specFromValue(this.savedValues[0]), this.savedValues);
      } else {
        return;
      }
      this.savedValues = null;
      this.copyToTargets();
    }

    /**
     * @param {import("./schema_widgets.js").InputSpec} spec  the target input's spec
     * @param {any[]} values  [value, control] as a file stores them
     */
    addValueWidgets(spec, values) {
      const hooks = {
        ...services.multiline,
        edited: (/** @type {any} */ widget, /** @type {boolean} */ final) => {
          this.copyToTargets();
          services.multiline.edited(widget, final);
        },
      };
      const changed = () => {
        this.copyToTargets();
        services.changedSoon();
      };
      const valueSpec = { ...spec, name: "value", optional: false };
      const widget = addSchemaWidget(this, valueSpec, (node, multiline) => {
        this.setSize([Math.max(this.size[0], 400), this.size[1] + 100]);
        return addMultilineWidget(node, multiline, hooks);
      }, changed);
      if (values.length && values[0] !== undefined) widget.value = values[0];
      const numeric = spec.type === "INT" || spec.type === "FLOAT";
      if (numeric || comboValues(spec) !== null) {
        // ComfyUI gives every number and combo primitive a control; "fixed" unless the input asks.
        const asks = wantsControl(spec);
        const flag = asks ? (spec.options.control_after_generate ?? "randomize") : "fixed";
        const controlSpec = { ...valueSpec, options: { ...spec.options, control_after_generate: flag } };
        const control = addControlWidget(this, widget, controlSpec, changed);
        if (CONTROL_VALUES.includes(values[1])) control.value = values[1];
      }
      const size = this.computeSize();
      this.setSize([Math.max(this.size[0], size[0]), Math.max(this.size[1], size[1])]);
      this.setDirtyCanvas(true, true);
    }

    /** Show the value in every target widget (the server takes it from this node either way). */
    copyToTargets() {
      const value = this.widgets?.[0]?.value;
      if (value === undefined) return;
      for (const { node, widget } of this.targets()) {
        if (widget.value === value) continue;
        widget.value = value;
        if (node.imageCombo === widget) node.widgetChanged?.(widget); // LoadImage previews its choice
      }
    }

    /** Only widget inputs, and after the first, only inputs of the same type. */
    onConnectOutput(/** @type {number} */ _slot, /** @type {any} */ _type, /** @type {any} */ input) {
      if (!input?.widget?.name) return false;
      const output = this.outputs[0];
      return !output.links?.length || output.type === "*" || String(input.type) === String(output.type);
    }

    onConnectionsChange(/** @type {number} */ kind, /** @type {number} */ _index, /** @type {boolean} */ connected) {
      if (kind !== LiteGraph.OUTPUT || loading.configuring) return;
      if (connected) {
        if (this.widgets?.length) this.copyToTargets();
        else this.build();
        return;
      }
      if (!this.outputs[0]?.links?.length) this.reset();
    }

    /** No target left: back to an unconnected primitive. */
    reset() {
      for (const widget of this.widgets ?? []) widget.onRemove?.();
      if (this.widgets) this.widgets.length = 0;
      const output = this.outputs[0];
      output.type = "*";
      output.name = UNCONNECTED_NAME;
      delete output.widget;
      this.setSize(this.computeSize());
      this.setDirtyCanvas(true, true);
    }

    onRemoved() {
      for (const widget of this.widgets ?? []) widget.onRemove?.();
    }
  }

  LiteGraph.registerNodeType(PRIMITIVE_TYPE, PrimitiveNode);
  PrimitiveNode.category = "utils";
  const primitives = () => app.graph.nodes.filter((/** @type {any} */ node) => node instanceof PrimitiveNode);
  app.graph.events.addEventListener("configuring", () => { loading.configuring = true; });
  app.graph.events.addEventListener("configured", () => {
    loading.configuring = false;
    for (const node of primitives()) node.build();
  });
  // A control changed the value after a prompt was queued: show the new value in the targets.
  app.addEventListener("queued", () => { for (const node of primitives()) node.copyToTargets(); });
  return PRIMITIVE_TYPE;
}
