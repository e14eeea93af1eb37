// @ts-check
/**
 * Files dropped on the page and workflow JSON pasted into it.
 *
 * A dropped .json, or a PNG, WebP, WebM/MKV or MP4/MOV carrying a workflow, opens through
 * app.workflow.openFile (media_metadata.js reads the layouts ComfyUI writes). A drop that lands on a node is offered to that node first: a node that takes
 * files (LoadImage uploads an image) defines `onDropFile(file)` and returns true, or a promise, when
 * it took the file; then the file is not also opened as a workflow. Every file drop is cancelled, so the browser never
 * navigates away to show the file. Pasting text that is a whole workflow (canvas or API format)
 * loads it; litegraph's own node clipboard is separate and unaffected.
 */
import { parseLenientJson } from "./pnginfo.js";
import { isApiPrompt, isCanvasWorkflow } from "./workflow_io.js";

const DROP_CLASS = "drop-active";
const MEDIA_NAME = /\.(webp|webm|mkv|mp4|m4v|mov)$/i;
const MEDIA_TYPES = ["image/webp", "video/webm", "video/x-matroska", "video/mp4", "video/quicktime"];

/** @param {DataTransfer | null} transfer */
function carriesFiles(transfer) {
  return !!transfer && Array.from(transfer.types || []).includes("Files");
}

/** @param {EventTarget | null} target */
function isTyping(target) {
  const element = /** @type {HTMLElement | null} */ (target);
  return !!element && (["INPUT", "TEXTAREA", "SELECT"].includes(element.tagName) || element.isContentEditable);
}

/**
 * The node under a drop, if the drop is on the canvas.
 * @param {any} app
 * @param {DragEvent} event
 */
export function nodeAtEvent(app, event) {
  const element = app.canvas.canvas;
  const rect = element.getBoundingClientRect();
  const x = event.clientX - rect.left;
  const y = event.clientY - rect.top;
  if (x < 0 || y < 0 || x > rect.width || y > rect.height) return null;
  const [graphX, graphY] = app.canvas.ds.convertCanvasToOffset([x, y]);
  return app.graph.getNodeOnPos(graphX, graphY, app.canvas.visible_nodes) ?? null;
}

/**
 * Offer the files to a node; true when it took one.
 * @param {any} node
 * @param {File[]} files
 * @param {DragEvent} event
 */
function offerToNode(node, files, event) {
  if (typeof node?.onDropFile !== "function") return false;
  if (typeof node.onDragOver === "function" && !node.onDragOver(event)) return false;
  for (const file of files) {
    const taken = node.onDropFile(file);
    if (taken === true || taken instanceof Promise) return true;
  }
  return false;
}

/** @param {File} file  a WebP or video file, which carries its workflow in its metadata */
function isMedia(file) {
  return MEDIA_NAME.test(file.name) || MEDIA_TYPES.includes(file.type);
}

/**
 * A .json, .png or media file first, else the first file (openFile explains what it cannot open).
 * @param {File[]} files
 */
function workflowFile(files) {
  return files.find((file) => /\.(json|png)$/i.test(file.name) || ["application/json", "image/png"].includes(file.type)
    || isMedia(file)) || files[0];
}

/** @param {any} app @param {DragEvent} event */
async function onDrop(app, event) {
  document.body.classList.remove(DROP_CLASS);
  if (!carriesFiles(event.dataTransfer)) return; // dragged text or links: the browser's business
  const files = Array.from(/** @type {DataTransfer} */ (event.dataTransfer).files);
  event.preventDefault();
  if (!files.length) return;
  if (offerToNode(nodeAtEvent(app, event), files, event)) return;
  await app.workflow.openFile(workflowFile(files));
}

/** @param {any} app @param {ClipboardEvent} event */
function onPaste(app, event) {
  if (isTyping(event.target)) return;
  const text = event.clipboardData?.getData("text/plain")?.trim();
  if (!text || !text.startsWith("{")) return;
  let data;
  try {
    data = parseLenientJson(text);
  } catch {
    return; // not JSON: nothing of ours
  }
  if (!isCanvasWorkflow(data) && !isApiPrompt(data)) return;
  event.preventDefault();
  try {
    app.workflow.load(data, { name: "Pasted workflow", named: false });
  } catch (error) {
    app.ui?.showError?.("Cannot load the pasted workflow", String(/** @type {any} */ (error)?.message || error));
  }
}

/** @param {any} app */
export function installDragDrop(app) {
  document.addEventListener("dragover", (event) => {
    if (!carriesFiles(event.dataTransfer)) return;
    event.preventDefault(); // without this the page is not a drop target
    /** @type {DataTransfer} */ (event.dataTransfer).dropEffect = "copy";
    document.body.classList.add(DROP_CLASS);
  });
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) document.body.classList.remove(DROP_CLASS); // left the window
  });
  document.addEventListener("drop", (event) => { onDrop(app, event); });
  document.addEventListener("paste", (event) => onPaste(app, event));
}
