// @ts-check
/**
 * Image upload for combo inputs flagged `image_upload` (LoadImage): an "upload" button widget that
 * opens a hidden file input, and dropping an image file on the node. The file goes to
 * /api/upload/image; the combo then names the uploaded file and the node previews it from
 * /api/view (type "input"). Changing the combo by hand updates the preview too.
 *
 * Nodes with an upload get `onDragOver(event)` and `onDropFile(file)`: the page's drop handler
 * (dragdrop.js) offers files dropped on a node to it first; an image is taken (a promise is
 * returned) and is then not also opened as a workflow.
 */
import { ImagePreview, belowWidgets } from "./image_preview.js";

const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"];

export class ImageUploader {
  /** @param {any} app */
  constructor(app) {
    this.app = app;
    /** @type {{node: any, combo: any} | null} the node whose button opened the file dialog */
    this.pending = null;
    this.input = document.createElement("input");
    this.input.type = "file";
    this.input.id = "image-upload-file";
    this.input.accept = IMAGE_TYPES.join(",");
    this.input.hidden = true;
    document.body.append(this.input);
    this.input.addEventListener("change", () => {
      const file = this.input.files?.[0];
      const pending = this.pending;
      this.pending = null;
      this.input.value = "";
      if (file && pending) void this.upload(pending.node, pending.combo, file);
    });
  }

  /**
   * Give `node` an upload button and a preview for `combo`.
   * @param {any} node @param {any} combo
   */
  attach(node, combo) {
    const preview = new ImagePreview(() => node.setDirtyCanvas(true, false));
    node.imagePreview = preview;
    node.imageCombo = combo;
    const button = node.addWidget("button", "upload", null, () => {
      this.pending = { node, combo };
      this.input.click();
    }, {});
    button.label = "choose file to upload";
    button.serialize = false; // ComfyUI files may carry a value for it; positional loading skips it
    node.onDragOver = (/** @type {DragEvent} */ event) => carriesImage(event.dataTransfer);
    node.onDropFile = (/** @type {File} */ file) =>
      (IMAGE_TYPES.includes(file.type) ? this.upload(node, combo, file) : false);
    this.showChoice(node, combo.value);
  }

  /**
   * Upload `file` and make it the combo's value.
   * @param {any} node @param {any} combo @param {File} file
   */
  async upload(node, combo, file) {
    try {
      const result = await this.app.api.uploadImage(file);
      const name = result.subfolder ? `${result.subfolder}/${result.name}` : result.name;
      const values = combo.options.values;
      // The list is the schema's own array, shared by every LoadImage: all of them can pick it now.
      if (Array.isArray(values) && !values.includes(name)) values.push(name);
      combo.value = name;
      this.showChoice(node, name);
      this.app.markChanged();
    } catch (error) {
      this.app.ui?.toast?.(`Upload failed: ${/** @type {Error} */ (error).message}`, "error");
      console.warn("flowmill: image upload failed", error);
    }
  }

  /** Preview the input image a combo value names. @param {any} node @param {any} value */
  showChoice(node, value) {
    const preview = /** @type {ImagePreview | undefined} */ (node.imagePreview);
    if (!preview) return;
    if (typeof value !== "string" || !value) {
      preview.load("");
      return;
    }
    const known = node.imageCombo?.options?.values;
    if (Array.isArray(known) && !known.includes(value)) {
      // Not among the server's input files (a workflow from elsewhere): say so without a 404.
      preview.showMissing(value);
      return;
    }
    const slash = value.lastIndexOf("/");
    const filename = slash >= 0 ? value.slice(slash + 1) : value;
    const subfolder = slash >= 0 ? value.slice(0, slash) : "";
    preview.load(this.app.api.viewUrl({ filename, subfolder, type: "input" }));
  }
}

/** Draw a node's input preview, if it has one. @param {CanvasRenderingContext2D} ctx @param {any} node */
export function drawUploadPreview(ctx, node) {
  const preview = /** @type {ImagePreview | undefined} */ (node.imagePreview);
  if (preview && !node.flags?.collapsed) preview.draw(ctx, node, belowWidgets(node));
}

/**
 * Whether a drag carries an image file. During dragover only `items` (kind and type) are readable;
 * `files` fills in on drop.
 * @param {DataTransfer | null} transfer
 */
function carriesImage(transfer) {
  if (imageFile(transfer)) return true;
  return Array.from(transfer?.items ?? []).some((item) => item.kind === "file" && IMAGE_TYPES.includes(item.type));
}

/** @param {DataTransfer | null} transfer */
function imageFile(transfer) {
  for (const file of transfer?.files ?? []) {
    if (IMAGE_TYPES.includes(file.type)) return file;
  }
  return null;
}
