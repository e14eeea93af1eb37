// @ts-check
/**
 * Workflow text is never markup. The vendored litegraph 0.17.2 builds parts of its DOM by
 * assigning strings to `innerHTML`, and several of those strings carry text a workflow file
 * controls: node types and titles (context-menu titles, the Properties Panel), property names and
 * `properties_info` labels (the Properties menu and its edit dialog), slot names and types (slot
 * menus, the search box's type filters) and combo values (the combo widget's menu, so an uploaded
 * file named `<img src=x onerror=...>.png` too). A shared workflow could therefore put a `<meta
 * http-equiv="refresh">` (navigates the tab away), a `<form>` or an `<img onerror>` into the page.
 *
 * Every such sink is closed here, by wrapping or replacing the litegraph code that feeds it, so the
 * strings are shown as text. litegraph's own fixed markup (its dialog templates, the colour menu's
 * swatches, the property menu's name/value spans around escaped text) keeps working. The vendored
 * file stays unmodified; like litegraph_patches.js this module checks that the code it wraps still
 * looks like 0.17.2 and leaves the library alone, loudly, when it does not.
 *
 * Sinks (line numbers of litegraph.es.js 0.17.2):
 *  - ContextMenu title (15971) and entries (16034, 16036): escaped by a ContextMenu subclass and an
 *    addItem wrapper; markup only inside litegraph's colour menu and the property menu below.
 *  - onShowMenuNodeProperties (9206): property labels were not escaped; replaced.
 *  - showEditPropertyValue (13394, 13384): property label and combo values; replaced.
 *  - createPanel().addHTML (13614) via showShowNodePanel (13741): node type and description; the
 *    panel's addHTML builds that header from text.
 *  - showSearchBox type filters (13132, 13153): slot type names; shown through escaped names.
 * The remaining innerHTML assignments in litegraph use constant strings or clear an element.
 */
import { LGraphCanvas, LiteGraph } from "../../vendor/litegraph/litegraph.es.js";

const ENTITIES = /** @type {Record<string, string>} */ ({
  "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
});
/** Constant markup litegraph passes to a panel's addHTML. */
const CONSTANT_PANEL_MARKUP = new Set(["<h3>Properties</h3>"]);

/** HTML that displays exactly `value` as text. @param {unknown} value */
export function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (char) => ENTITIES[char]);
}

/** @param {any} _app */
export function applyTextNotMarkupPatches(_app) {
  const problems = sinkProblems();
  if (problems.length) {
    console.warn(`flowmill: litegraph's HTML sinks changed (${problems.join("; ")}); the text-not-markup patches `
      + "in web/js/patches/text_not_markup.js were NOT applied. Re-check every innerHTML in the new version.");
    return;
  }
  // Litegraph builders whose markup is trusted: while one of them runs, menu entries keep markup.
  const trusted = { depth: 0 };
  patchContextMenu(trusted);
  patchPropertiesMenu(trusted);
  patchColourMenu(trusted);
  patchPropertyDialog();
  patchNodePanel();
  patchSearchTypeFilters();
}

/** What must still hold for the patches to fit: each wrapped function still has the sink it closes. */
function sinkProblems() {
  const problems = [];
  const source = (/** @type {any} */ fn) => String(fn ?? "");
  const expect = (/** @type {string} */ name, /** @type {any} */ fn, /** @type {string[]} */ markers) => {
    if (typeof fn !== "function" || !markers.every((marker) => source(fn).includes(marker))) {
      problems.push(`${name} changed`);
    }
  };
  const ContextMenu = LiteGraph.ContextMenu;
  expect("ContextMenu", ContextMenu, ["innerHTML = options.title"]);
  expect("ContextMenu.addItem", ContextMenu?.prototype?.addItem, ["element.innerHTML = value?.title ?? innerHtml",
    "element.value = value", "return element"]);
  expect("onShowMenuNodeProperties", LGraphCanvas.onShowMenuNodeProperties, ["property_name", "showEditPropertyValue"]);
  expect("onMenuNodeColors", LGraphCanvas.onMenuNodeColors, ["new LiteGraph.ContextMenu"]);
  expect("showEditPropertyValue", LGraphCanvas.prototype.showEditPropertyValue, ["createDialog", "onPropertyChanged"]);
  expect("createPanel", LGraphCanvas.prototype.createPanel, ["root.addHTML", "elem.innerHTML = code"]);
  expect("showShowNodePanel", LGraphCanvas.prototype.showShowNodePanel,
    ["<span class='node_type'>${node2.type}</span><span class='node_desc'>${node2.constructor.desc || \"\"}</span>"
      + "<span class='separator'></span>", "panel.node = node2"]);
  expect("showSearchBox", LGraphCanvas.prototype.showSearchBox,
    ["opt.innerHTML = aSlots[iK]", "opt.innerHTML = aSlot"]);
  return problems;
}

/** Run `fn` with markup allowed in menu entries (only for litegraph builders that escape data). */
function withMarkup(/** @type {{depth: number}} */ trusted, /** @type {() => any} */ fn) {
  trusted.depth++;
  try {
    return fn();
  } finally {
    trusted.depth--;
  }
}

/**
 * Menu titles and entries are text. The entry keeps its real value (callbacks receive it); only
 * what the original addItem writes into innerHTML is replaced by its escaped form.
 * @param {{depth: number}} trusted
 */
function patchContextMenu(trusted) {
  const Base = LiteGraph.ContextMenu;
  const addItem = Base.prototype.addItem;
  Base.prototype.addItem = function addItemAsText(/** @type {any} */ name, /** @type {any} */ value,
    /** @type {any} */ options) {
    if (trusted.depth > 0 || value === null) return addItem.call(this, name, value, options);
    const isObject = typeof value === "object" && value !== null;
    const shown = isObject && value.title != null ? value.title : name;
    const html = shown == null ? "" : escapeHtml(shown);
    // addItem writes `value.title ?? name` for objects and `name` otherwise into innerHTML.
    const standIn = isObject
      ? new Proxy(value, { get: (target, key) => (key === "title" ? html : Reflect.get(target, key)) })
      : value;
    const element = addItem.call(this, isObject ? name : html, standIn, options);
    element.value = value;
    if (typeof value === "function") element.dataset.value = String(name);
    return element;
  };
  class TextTitleContextMenu extends Base {
    /** @param {any} values @param {any} options @param {...any} rest */
    constructor(values, options, ...rest) {
      const title = options?.title;
      super(values, title == null || trusted.depth > 0 ? options : { ...options, title: escapeHtml(title) }, ...rest);
    }
  }
  LiteGraph.ContextMenu = TextTitleContextMenu;
}

/**
 * The node's Properties submenu: litegraph escaped the values but not the names (or a
 * `properties_info` label, which a file can also set). Same entries, both escaped.
 * @param {{depth: number}} trusted
 */
function patchPropertiesMenu(trusted) {
  LGraphCanvas.onShowMenuNodeProperties = function onShowMenuNodeProperties(
    /** @type {any} */ _value, /** @type {any} */ _options, /** @type {any} */ event,
    /** @type {any} */ previousMenu, /** @type {any} */ node,
  ) {
    if (!node?.properties) return;
    const canvas = LGraphCanvas.active_canvas;
    const entries = [];
    for (const name of Object.keys(node.properties)) {
      let value = node.properties[name] !== undefined ? node.properties[name] : " ";
      if (typeof value === "object") value = JSON.stringify(value);
      const info = node.getPropertyInfo(name) ?? {};
      if (info.type === "enum" || info.type === "combo") {
        value = LGraphCanvas.getPropertyPrintableValue(value, info.values);
      }
      const label = info.label || name;
      entries.push({
        content: `<span class='property_name'>${escapeHtml(label)}</span>`
          + `<span class='property_value'>${escapeHtml(value ?? "")}</span>`,
        value: name,
      });
    }
    if (!entries.length) return;
    withMarkup(trusted, () => new LiteGraph.ContextMenu(entries, {
      event,
      parentMenu: previousMenu,
      node,
      callback(/** @type {any} */ entry) {
        const rect = this.getBoundingClientRect();
        canvas.showEditPropertyValue(node, entry.value, { position: [rect.left, rect.top] });
      },
    }, canvas.getCanvasWindow()));
    return false;
  };
}

/** The colour menu draws swatches with markup made only of litegraph's own colour table. */
function patchColourMenu(/** @type {{depth: number}} */ trusted) {
  const colours = LGraphCanvas.onMenuNodeColors;
  LGraphCanvas.onMenuNodeColors = function onMenuNodeColors(/** @type {any[]} */ ...args) {
    return withMarkup(trusted, () => colours.apply(this, args));
  };
}

/**
 * The edit dialog of one property, as litegraph 0.17.2 draws it, with the label and the choices
 * set as text (litegraph interpolated both into the dialog's HTML).
 */
function patchPropertyDialog() {
  LGraphCanvas.prototype.showEditPropertyValue = function showEditPropertyValue(
    /** @type {any} */ node, /** @type {string} */ property, /** @type {any} */ options = {},
  ) {
    if (!node || node.properties[property] === undefined) return;
    const info = node.getPropertyInfo(property) ?? {};
    const { type } = info;
    const choices = (type === "enum" || type === "combo") && info.values ? info.values : null;
    let field;
    if (choices) field = "<select autofocus class='value'></select>";
    else if (["string", "number", "array", "object"].includes(type)) {
      field = "<input autofocus type='text' class='value'/>";
    }
    else if (type === "boolean" || type === "toggle") field = "<input autofocus type='checkbox' class='value'/>";
    else {
      console.warn(`unknown type: ${type}`);
      return;
    }
    const dialog = this.createDialog(`<span class='name'></span>${field}<button>OK</button>`, options);
    dialog.querySelector(".name").textContent = String(info.label || property);
    const canvas = this;
    /** @param {any} raw */
    const setValue = (raw) => {
      let value = raw;
      if (info.values && typeof info.values === "object" && info.values[value] != undefined) value = info.values[value];
      if (typeof node.properties[property] === "number") value = Number(value);
      if (type === "array" || type === "object") value = JSON.parse(value);
      node.properties[property] = value;
      if (node.graph) node.graph._version++;
      node.onPropertyChanged?.(property, value);
      options.onclose?.();
      dialog.close();
      canvas.setDirty(true, true);
    };
    let input;
    if (choices) {
      input = dialog.querySelector("select");
      for (const key of Object.keys(choices)) {
        const optionValue = Array.isArray(choices) ? choices[/** @type {any} */ (key)] : key;
        const option = document.createElement("option");
        option.value = String(optionValue);
        option.textContent = String(choices[/** @type {any} */ (key)]);
        option.selected = optionValue == node.properties[property];
        input.append(option);
      }
      input.addEventListener("change", (/** @type {Event} */ event) => {
        dialog.modified();
        setValue(/** @type {HTMLSelectElement} */ (event.target).value);
      });
    } else if (type === "boolean" || type === "toggle") {
      input = dialog.querySelector("input");
      input.checked = Boolean(node.properties[property]);
      input.addEventListener("click", () => {
        dialog.modified();
        setValue(Boolean(input.checked));
      });
    } else {
      input = dialog.querySelector("input");
      input.addEventListener("blur", function refocus() { this.focus(); });
      const current = node.properties[property];
      input.value = type !== "string" ? JSON.stringify(current) : current;
      input.addEventListener("keydown", (/** @type {KeyboardEvent} */ event) => {
        if (event.key === "Escape") dialog.close();
        else if (event.key === "Enter") setValue(input.value);
        else {
          dialog.modified();
          return;
        }
        event.preventDefault();
        event.stopPropagation();
      });
    }
    input.focus();
    dialog.querySelector("button").addEventListener("click", () => setValue(input.value));
    return dialog;
  };
}

/**
 * The Properties Panel's header names the node type (and the class's description) through
 * addHTML. The panel knows its node, so the header litegraph would write is rebuilt from text;
 * any other non-constant markup is shown as text.
 */
function patchNodePanel() {
  const createPanel = LGraphCanvas.prototype.createPanel;
  LGraphCanvas.prototype.createPanel = function createTextPanel(/** @type {any[]} */ ...args) {
    const panel = createPanel.apply(this, args);
    const addHTML = panel.addHTML;
    panel.addHTML = function addText(/** @type {string} */ code, /** @type {string} */ className,
      /** @type {boolean} */ onFooter) {
      if (CONSTANT_PANEL_MARKUP.has(code)) return addHTML.call(this, code, className, onFooter);
      const node = panel.node;
      const description = node?.constructor?.desc || "";
      const header = node && `<span class='node_type'>${node.type}</span><span class='node_desc'>${description}</span>`
        + "<span class='separator'></span>";
      if (node && code === header) {
        const empty = "<span class='node_type'></span><span class='node_desc'></span><span class='separator'></span>";
        const element = addHTML.call(this, empty, className, onFooter);
        element.querySelector(".node_type").textContent = String(node.type);
        element.querySelector(".node_desc").textContent = String(description);
        return element;
      }
      const element = addHTML.call(this, "", className, onFooter);
      element.textContent = String(code);
      return element;
    };
    return panel;
  };
}

/**
 * The search box's slot-type filters (used when litegraph's own type filter is on) were filled
 * with `option.innerHTML = type`. The box is built from escaped names, then each option gets its
 * real type back as value and text.
 */
function patchSearchTypeFilters() {
  const show = LGraphCanvas.prototype.showSearchBox;
  LGraphCanvas.prototype.showSearchBox = function showSearchBoxWithTextTypes(
    /** @type {any} */ event, /** @type {any} */ searchOptions,
  ) {
    const inputs = LiteGraph.slot_types_in;
    const outputs = LiteGraph.slot_types_out;
    LiteGraph.slot_types_in = inputs.map(escapeHtml);
    LiteGraph.slot_types_out = outputs.map(escapeHtml);
    let dialog;
    try {
      dialog = show.call(this, event, searchOptions);
    } finally {
      LiteGraph.slot_types_in = inputs;
      LiteGraph.slot_types_out = outputs;
    }
    restoreTypeOptions(dialog?.querySelector?.(".slot_in_type_filter"), inputs, searchOptions?.type_filter_in);
    restoreTypeOptions(dialog?.querySelector?.(".slot_out_type_filter"), outputs, searchOptions?.type_filter_out);
    return dialog;
  };
}

/** @param {HTMLSelectElement | null | undefined} select @param {string[]} types @param {any} wanted */
function restoreTypeOptions(select, types, wanted) {
  if (!select) return;
  const added = Array.from(select.options).slice(1); // the first is litegraph's empty "any type"
  added.forEach((option, index) => {
    const type = String(types[index]);
    if (option.value === type) return;
    option.value = type;
    option.textContent = type;
    const isWanted = wanted != null && wanted !== false && String(wanted).toLowerCase() === type.toLowerCase();
    if (isWanted) option.selected = true;
  });
}
