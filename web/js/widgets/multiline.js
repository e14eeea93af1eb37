// @ts-check
/**
 * The prompt editor: a multiline STRING widget backed by a real <textarea class="app-multiline">
 * over the canvas (dom_widget.js), so typing, selection, copy/paste, spellcheck-free editing and
 * the browser's own undo work as in any text field. The widget owns the text; the textarea is
 * created on the first draw only, so nodes that are never shown (clipboard clones, far-away
 * nodes of a large graph) cost no DOM.
 */
import { MIN_OVERLAY_SCALE } from "./dom_widget.js";

const MARGIN = 10;
const MIN_HEIGHT = 60;

/**
 * @typedef {object} MultilineHooks
 * @property {import("./dom_widget.js").DomOverlay} overlay
 * @property {(node: any) => void} select      the user started editing this node's text
 * @property {(widget: any, final: boolean) => void} edited  text changed (final: the edit ended)
 * @property {(event: WheelEvent) => void} wheel  a wheel the textarea does not need (zooms the canvas)
 */

/**
 * @param {any} node
 * @param {import("./schema_widgets.js").InputSpec} spec
 * @param {MultilineHooks} hooks
 */
export function addMultilineWidget(node, spec, hooks) {
  let text = String(spec.options.default ?? "");
  /** @type {HTMLTextAreaElement | null} */
  let textarea = null;

  const create = () => {
    const element = document.createElement("textarea");
    element.className = "app-multiline";
    element.spellcheck = false;
    element.placeholder = spec.options.placeholder || spec.name;
    element.dataset.widget = spec.name;
    element.value = text;
    element.addEventListener("input", () => {
      text = element.value;
      hooks.edited(widget, false);
    });
    element.addEventListener("change", () => hooks.edited(widget, true));
    element.addEventListener("pointerdown", () => hooks.select(node));
    element.addEventListener("wheel", (event) => {
      const scrollable = element.scrollHeight > element.clientHeight;
      if (event.ctrlKey || !scrollable) {
        event.preventDefault();
        hooks.wheel(event);
      }
    }, { passive: false });
    hooks.overlay.attach(element);
    return element;
  };

  const widget = {
    type: "customtext",
    name: spec.name,
    options: { multiline: true },
    y: 0,
    get value() { return text; },
    set value(value) {
      text = value == null ? "" : String(value);
      if (textarea && textarea.value !== text) textarea.value = text;
    },
    /** Grows into the node's free space (litegraph's layout), never below MIN_HEIGHT. */
    computeLayoutSize() {
      return { minHeight: MIN_HEIGHT, maxHeight: 1e6, minWidth: 120 };
    },
    /**
     * Called by litegraph for every drawn frame of a visible, expanded node.
     * @param {CanvasRenderingContext2D} ctx @param {any} drawnNode @param {number} width @param {number} y
     */
    draw(ctx, drawnNode, width, y) {
      const height = (this.computedHeight ?? MIN_HEIGHT) - 4;
      if (hooks.overlay.canvas.ds.scale < MIN_OVERLAY_SCALE) {
        drawPlaceholder(ctx, width, y, height, text);
        return;
      }
      textarea ??= create();
      const id = String(drawnNode.id);
      if (textarea.dataset.nodeId !== id) textarea.dataset.nodeId = id;
      // A linked (converted) input overrides the text: show it greyed out and read-only.
      const linked = drawnNode.getSlotFromWidget?.(this)?.link != null;
      if (textarea.disabled !== linked) textarea.disabled = linked;
      // Muted (2) and bypassed (4) nodes are dimmed on the canvas; dim their text with them.
      textarea.classList.toggle("app-inactive", drawnNode.mode === 2 || drawnNode.mode === 4);
      hooks.overlay.place(textarea, drawnNode, MARGIN, y, width - 2 * MARGIN, height);
    },
    /** The node left the graph: drop the element. */
    onRemove() {
      if (textarea) hooks.overlay.detach(textarea);
      textarea = null;
    },
  };
  return node.addCustomWidget(widget);
}

/**
 * What the canvas shows where the textarea would be when zoomed out: a box and the first line.
 * @param {CanvasRenderingContext2D} ctx @param {number} width @param {number} y @param {number} height
 * @param {string} text
 */
function drawPlaceholder(ctx, width, y, height, text) {
  ctx.save();
  ctx.fillStyle = "#222";
  ctx.strokeStyle = "#444";
  ctx.beginPath();
  ctx.rect(MARGIN, y, width - 2 * MARGIN, height);
  ctx.fill();
  ctx.stroke();
  ctx.fillStyle = "#999";
  ctx.font = "12px sans-serif";
  ctx.fillText(text.split("\n", 1)[0].slice(0, 60), MARGIN + 6, y + 16, width - 2 * MARGIN - 12);
  ctx.restore();
}
