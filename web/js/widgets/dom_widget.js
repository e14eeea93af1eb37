// @ts-check
/**
 * DOM elements laid over the canvas as widgets (the "DOM widget" pattern, frontend.md §4): the
 * element lives in one absolutely positioned layer above the canvas and is moved with a CSS
 * transform computed from the canvas' pan and zoom each time the node is drawn. An element whose
 * node was not drawn in a frame (off-screen, collapsed, hidden widget) or that would be smaller
 * than half size is hidden, so a large graph keeps only a few live overlays (frontend.md §5.3).
 */

/** Below this zoom the overlays are hidden: the text is unreadable and they would cost frames. */
export const MIN_OVERLAY_SCALE = 0.5;

export class DomOverlay {
  /** @param {any} canvas  the LGraphCanvas */
  constructor(canvas) {
    this.canvas = canvas;
    this.frame = 0;
    /** @type {Map<HTMLElement, number>} visible elements -> the frame that last placed them */
    this.placed = new Map();
    /** @type {WeakMap<HTMLElement, string>} the geometry each element was last given */
    this.geometry = new WeakMap();
    /** The canvas element's offset inside the layer's parent, in CSS pixels. */
    this.origin = [0, 0];
    this.layer = document.createElement("div");
    this.layer.className = "app-dom-layer";
    /** @type {HTMLElement} */ (canvas.canvas.parentElement).append(this.layer);
    // Wrap this canvas' draw (an instance property, not the prototype) to learn where a front
    // frame starts and ends; litegraph only calls widget.draw for nodes it actually draws.
    const draw = canvas.draw;
    canvas.draw = (/** @type {any[]} */ ...args) => {
      const front = Boolean(canvas.dirty_canvas || args[0]);
      if (front) {
        this.frame++;
        // Read once per frame: reading layout between style writes would force a reflow each time.
        this.origin = [canvas.canvas.offsetLeft, canvas.canvas.offsetTop];
      }
      draw.apply(canvas, args);
      if (front) this.#hideUnplaced();
    };
  }

  /** @param {HTMLElement} element */
  attach(element) {
    element.style.display = "none";
    this.layer.append(element);
  }

  /** @param {HTMLElement} element */
  detach(element) {
    this.placed.delete(element);
    element.remove();
  }

  /**
   * Show `element` over a node-relative rectangle (graph units) for the current frame.
   * @param {HTMLElement} element @param {any} node
   * @param {number} x @param {number} y @param {number} width @param {number} height
   */
  place(element, node, x, y, width, height) {
    const { ds } = this.canvas;
    if (ds.scale < MIN_OVERLAY_SCALE || width <= 0 || height <= 0) return;
    this.placed.set(element, this.frame);
    const left = (node.pos[0] + x + ds.offset[0]) * ds.scale + this.origin[0];
    const top = (node.pos[1] + y + ds.offset[1]) * ds.scale + this.origin[1];
    const geometry = `${left},${top},${ds.scale},${width},${height}`;
    if (this.geometry.get(element) !== geometry) {
      // Written only on change: even a same-value write costs a style recalculation.
      this.geometry.set(element, geometry);
      element.style.transform = `translate(${left}px, ${top}px) scale(${ds.scale})`;
      element.style.width = `${width}px`;
      element.style.height = `${height}px`;
    }
    if (element.style.display === "none") element.style.display = "";
  }

  #hideUnplaced() {
    for (const [element, frame] of this.placed) {
      if (frame === this.frame) continue;
      element.style.display = "none";
      this.placed.delete(element);
    }
  }
}
