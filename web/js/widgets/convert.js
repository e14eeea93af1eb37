// @ts-check
/**
 * Widget <-> input conversion. A converted widget gets an input socket that names it
 * (`{name, type, widget: {name}}`, ComfyUI's format), drawn on the widget's own row by litegraph;
 * while a link is attached the widget is greyed out and the server takes the linked value
 * (engine/convert.py resolves the link, else keeps the widget value). The widget itself stays in
 * `node.widgets`, so positional `widgets_values` keep their meaning. Converting back removes the
 * socket and its link.
 */

/** @param {any} widget  whether this widget may become an input */
export function isConvertible(widget) {
  return Boolean(widget?.socketType) && widget.serialize !== false;
}

/** @param {any} node @returns {any[]} widgets that could become inputs now */
export function convertibleWidgets(node) {
  return (node.widgets ?? []).filter((widget) => isConvertible(widget) && !node.getSlotFromWidget(widget));
}

/** @param {any} node @returns {any[]} widgets that currently have an input socket */
export function convertedWidgets(node) {
  return (node.widgets ?? []).filter((widget) => isConvertible(widget) && node.getSlotFromWidget(widget));
}

/**
 * Give the widget named `name` an input socket. Returns the slot index, or -1.
 * @param {any} node @param {string} name
 */
export function convertWidgetToInput(node, name) {
  const widget = node.widgets?.find((candidate) => candidate.name === name);
  if (!isConvertible(widget)) return -1;
  const existing = node.inputs.findIndex((slot) => slot.widget?.name === name);
  if (existing >= 0) return existing;
  node.addInput(name, widget.socketType, { widget: { name } });
  node.setDirtyCanvas(true, true);
  return node.inputs.length - 1;
}

/**
 * Remove the input socket of the widget named `name` (and its link). Returns true if removed.
 * @param {any} node @param {string} name
 */
export function convertInputToWidget(node, name) {
  const index = node.inputs.findIndex((slot) => slot.widget?.name === name);
  if (index < 0) return false;
  node.removeInput(index);
  node.setDirtyCanvas(true, true);
  return true;
}

/**
 * Node context-menu entries for converting (to prepend via getExtraMenuOptions).
 * @param {any} node @param {() => void} changed
 */
export function conversionMenu(node, changed) {
  const entries = [];
  const toInput = convertibleWidgets(node);
  const toWidget = convertedWidgets(node);
  if (toInput.length) {
    entries.push({
      content: "Convert Widget to Input",
      has_submenu: true,
      submenu: {
        title: "Widget",
        options: toInput.map((widget) => ({
          content: widget.name,
          callback: () => { convertWidgetToInput(node, widget.name); changed(); },
        })),
      },
    });
  }
  if (toWidget.length) {
    entries.push({
      content: "Convert Input to Widget",
      has_submenu: true,
      submenu: {
        title: "Input",
        options: toWidget.map((widget) => ({
          content: widget.name,
          callback: () => { convertInputToWidget(node, widget.name); changed(); },
        })),
      },
    });
  }
  return entries;
}
