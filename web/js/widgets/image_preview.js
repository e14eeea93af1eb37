// @ts-check
/**
 * An image shown inside a node, below its widgets (LoadImage's input preview). The image is
 * downscaled once into a thumbnail canvas when it loads: redrawing a full-size photo every frame
 * is what makes panning stutter (frontend.md §5.3, ComfyUI_frontend #388).
 */

const THUMBNAIL_SIZE = 512;
const MARGIN = 10;

export class ImagePreview {
  /** @param {() => void} redraw  called when the image has loaded (or failed) */
  constructor(redraw) {
    this.redraw = redraw;
    this.url = "";
    /** @type {HTMLCanvasElement | null} */
    this.thumbnail = null;
    this.naturalSize = [0, 0];
    this.failed = false;
  }

  /** Show the image at `url` ("" clears the preview). @param {string} url */
  load(url) {
    if (url === this.url) return;
    this.url = url;
    this.thumbnail = null;
    this.failed = false;
    if (!url) {
      this.redraw();
      return;
    }
    const image = new Image();
    image.addEventListener("load", () => {
      if (this.url !== url) return; // a newer choice won the race
      this.naturalSize = [image.naturalWidth, image.naturalHeight];
      this.thumbnail = downscale(image);
      this.redraw();
    });
    image.addEventListener("error", () => {
      if (this.url !== url) return;
      this.failed = true;
      this.redraw();
    });
    image.src = url;
  }

  /** No image to load: draw a "not found" note instead. @param {string} key  what was asked for */
  showMissing(key) {
    this.url = `missing:${key}`;
    this.thumbnail = null;
    this.failed = true;
    this.redraw();
  }

  get loaded() {
    return this.thumbnail !== null;
  }

  /**
   * Draw into the node's free area below `top` (node-local graph units).
   * @param {CanvasRenderingContext2D} ctx @param {any} node @param {number} top
   */
  draw(ctx, node, top) {
    const width = node.size[0] - 2 * MARGIN;
    const height = node.size[1] - top - MARGIN - 14;
    if (width < 16 || height < 16) return;
    ctx.save();
    if (this.thumbnail) {
      const [imageWidth, imageHeight] = this.naturalSize;
      const scale = Math.min(width / imageWidth, height / imageHeight);
      const drawWidth = imageWidth * scale;
      const drawHeight = imageHeight * scale;
      const x = MARGIN + (width - drawWidth) / 2;
      ctx.drawImage(this.thumbnail, x, top, drawWidth, drawHeight);
      caption(ctx, `${imageWidth} × ${imageHeight}`, node.size[0] / 2, top + drawHeight + 12);
    } else if (this.failed) {
      caption(ctx, "image not found", node.size[0] / 2, top + 14);
    }
    ctx.restore();
  }
}

/** @param {HTMLImageElement} image */
function downscale(image) {
  const scale = Math.min(1, THUMBNAIL_SIZE / Math.max(image.naturalWidth, image.naturalHeight, 1));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(image.naturalWidth * scale));
  canvas.height = Math.max(1, Math.round(image.naturalHeight * scale));
  /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d")).drawImage(image, 0, 0, canvas.width, canvas.height);
  return canvas;
}

/** @param {CanvasRenderingContext2D} ctx @param {string} text @param {number} x @param {number} y */
function caption(ctx, text, x, y) {
  ctx.fillStyle = "#aaa";
  ctx.font = "11px sans-serif";
  ctx.textAlign = "center";
  ctx.fillText(text, x, y);
}

/** The y (node-local) just below the node's last visible widget. @param {any} node */
export function belowWidgets(node) {
  let bottom = 0;
  for (const widget of node.widgets ?? []) {
    if (widget.hidden || widget.last_y === undefined) continue;
    bottom = Math.max(bottom, widget.last_y + (widget.computedHeight ?? 24));
  }
  return bottom + 4;
}
