// @ts-check
/**
 * The workflow embedded in a WebP image, a WebM/Matroska video or an MP4/MOV video, as ComfyUI
 * (and Flowmill) write it. This module only reads bytes; it knows nothing about the app.
 *
 *  - WebP (still and animated): an `EXIF` chunk holding a TIFF structure (sometimes after an
 *    "Exif\0\0" prefix). ComfyUI's SaveAnimatedWEBP stores text entries "<key>:<json>": the prompt
 *    in tag 0x0110 (Model) and each extra_pnginfo entry from tag 0x010F (Make) downwards, so
 *    "workflow:{...}" usually sits in 0x010F. Every text entry of every IFD is read.
 *  - WebM / MKV: FFmpeg writes container metadata as Matroska SimpleTags (Tags > Tag > SimpleTag,
 *    TagName + TagString) and upper-cases their names ("WORKFLOW", "PROMPT").
 *  - MP4 / MOV: with `movflags=use_metadata_tags` (what ComfyUI passes) FFmpeg writes
 *    moov > udta > meta with a `keys` box naming each entry and an `ilst` box whose items (typed by
 *    the key's 1-based index) hold `data` boxes; iTunes-style "----" freeform items are read too.
 *
 * Values are JSON text; some writers encoded the JSON again as a JSON string, so a string that
 * parses is unwrapped (a few times at most). Every length field is checked against the bytes that
 * exist, element walks are iterative and bounded, and files over MAX_MEDIA_BYTES are refused, so a
 * hostile file costs at most a linear pass over a bounded buffer.
 */
import { parseLenientJson } from "./pnginfo.js";

/** Bigger files are not read: a generated clip with a workflow is a few megabytes. */
export const MAX_MEDIA_BYTES = 256 * 1024 * 1024;
/** Text values beyond this are ignored (a workflow is a few hundred kilobytes). */
const MAX_TEXT_BYTES = 64 * 1024 * 1024;
/** Nesting depth of boxes / EBML masters the readers follow. */
const MAX_DEPTH = 16;
/** How many IFDs a TIFF may chain before the reader stops (a loop is also caught). */
const MAX_IFDS = 16;
const MAX_JSON_UNWRAPS = 4;
const UTF8 = new TextDecoder("utf-8");
const EBML_MAGIC = [0x1a, 0x45, 0xdf, 0xa3];

/** @typedef {"png" | "webp" | "matroska" | "isobmff"} MediaKind */

/** @param {Uint8Array} bytes @param {number} at @param {string} text */
function hasAscii(bytes, at, text) {
  if (at < 0 || at + text.length > bytes.length) return false;
  for (let i = 0; i < text.length; i++) if (bytes[at + i] !== text.charCodeAt(i)) return false;
  return true;
}

/**
 * Which container the bytes are, from their first bytes (not the file name).
 * @param {Uint8Array} bytes
 * @returns {MediaKind | null}
 */
export function mediaKind(bytes) {
  if (bytes.length >= 8 && bytes[0] === 0x89 && hasAscii(bytes, 1, "PNG")) return "png";
  if (hasAscii(bytes, 0, "RIFF") && hasAscii(bytes, 8, "WEBP")) return "webp";
  if (EBML_MAGIC.every((value, index) => bytes[index] === value)) return "matroska";
  if (["ftyp", "moov", "wide", "mdat"].some((type) => hasAscii(bytes, 4, type))) return "isobmff";
  return null;
}

/** @param {Uint8Array} bytes  text up to the first NUL, as UTF-8 */
function decodeText(bytes) {
  const end = bytes.indexOf(0);
  return UTF8.decode(end < 0 ? bytes : bytes.subarray(0, end));
}

// ---------------------------------------------------------------------------------------------
// WebP: RIFF chunks, then EXIF (TIFF) entries "<key>:<value>"

/**
 * Every "<key>:<value>" text of a WebP's EXIF chunk, as {key: value}; the first of a key wins.
 * @param {Uint8Array} bytes
 * @returns {Record<string, string>}
 */
export function readWebpTexts(bytes) {
  /** @type {Record<string, string>} */
  const texts = {};
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const riffEnd = Math.min(bytes.length, 8 + view.getUint32(4, true));
  let offset = 12;
  while (offset + 8 <= riffEnd) {
    const size = view.getUint32(offset + 4, true);
    const start = offset + 8;
    const end = start + size;
    if (end > riffEnd) break; // truncated: keep what was read
    if (hasAscii(bytes, offset, "EXIF")) {
      let tiff = bytes.subarray(start, end);
      if (hasAscii(tiff, 0, "Exif\0\0")) tiff = tiff.subarray(6);
      for (const text of tiffTexts(tiff)) {
        const colon = text.indexOf(":");
        if (colon <= 0) continue;
        const key = text.slice(0, colon);
        if (!(key in texts)) texts[key] = text.slice(colon + 1);
      }
    }
    offset = end + (size % 2); // chunks are padded to an even size
  }
  return texts;
}

/**
 * The text values (ASCII, BYTE or UNDEFINED entries) of every IFD in a TIFF structure.
 * @param {Uint8Array} tiff
 * @returns {string[]}
 */
function tiffTexts(tiff) {
  if (tiff.length < 8) return [];
  const little = hasAscii(tiff, 0, "II");
  if (!little && !hasAscii(tiff, 0, "MM")) return [];
  const view = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  if (view.getUint16(2, little) !== 42) return [];
  const texts = [];
  const seen = new Set();
  let ifd = view.getUint32(4, little);
  while (ifd > 0 && ifd + 2 <= tiff.length && !seen.has(ifd) && seen.size < MAX_IFDS) {
    seen.add(ifd);
    const count = view.getUint16(ifd, little);
    for (let index = 0; index < count; index++) {
      const entry = ifd + 2 + index * 12;
      if (entry + 12 > tiff.length) break;
      const type = view.getUint16(entry + 2, little);
      if (type !== 1 && type !== 2 && type !== 7) continue; // BYTE, ASCII, UNDEFINED: one byte each
      const length = view.getUint32(entry + 4, little);
      const at = length <= 4 ? entry + 8 : view.getUint32(entry + 8, little);
      if (length > MAX_TEXT_BYTES || at + length > tiff.length) continue;
      texts.push(decodeText(tiff.subarray(at, at + length)));
    }
    const next = ifd + 2 + count * 12;
    ifd = next + 4 <= tiff.length ? view.getUint32(next, little) : 0;
  }
  return texts;
}

// ---------------------------------------------------------------------------------------------
// Matroska / WebM: EBML elements, SimpleTag name -> string

const EBML = {
  SEGMENT: 0x18538067, CLUSTER: 0x1f43b675, TAGS: 0x1254c367, TAG: 0x7373,
  SIMPLE_TAG: 0x67c8, TAG_NAME: 0x45a3, TAG_STRING: 0x4487, TAG_BINARY: 0x4485,
};
/** Masters the reader enters; every other element is skipped by its size. */
const EBML_MASTERS = new Set([EBML.SEGMENT, EBML.CLUSTER, EBML.TAGS, EBML.TAG, EBML.SIMPLE_TAG]);

/**
 * One EBML variable-length number at `at`: [value, length], value -1 for "unknown size".
 * @param {Uint8Array} bytes @param {number} at @param {boolean} keepMarker  IDs keep their length bits
 * @returns {[number, number] | null}
 */
function readVint(bytes, at, keepMarker) {
  if (at >= bytes.length) return null;
  const first = bytes[at];
  let length = 1;
  while (length <= 8 && !(first & (0x80 >> (length - 1)))) length++;
  if (length > 8 || at + length > bytes.length) return null;
  let value = keepMarker ? first : first & (0xff >> length);
  let allOnes = value === (0xff >> length);
  for (let i = 1; i < length; i++) {
    value = value * 256 + bytes[at + i];
    if (bytes[at + i] !== 0xff) allOnes = false;
  }
  return [!keepMarker && allOnes ? -1 : value, length];
}

/**
 * Every SimpleTag of a Matroska file as {NAME: string}; the first of a name wins.
 * @param {Uint8Array} bytes
 * @returns {Record<string, string>}
 */
export function readMatroskaTags(bytes) {
  /** @type {Record<string, string>} */
  const tags = {};
  /** @type {Array<{end: number, depth: number}>} */
  const levels = [{ end: bytes.length, depth: 0 }];
  let at = 0;
  while (levels.length) {
    const level = levels[levels.length - 1];
    if (at >= level.end) {
      levels.pop();
      continue;
    }
    const id = readVint(bytes, at, true);
    const size = id && readVint(bytes, at + id[1], false);
    if (!id || !size) break; // a broken element: nothing after it can be trusted
    const start = at + id[1] + size[1];
    // An unknown size (live streams) runs to the end of its parent.
    const end = size[0] < 0 ? level.end : Math.min(start + size[0], level.end);
    if (id[0] === EBML.SIMPLE_TAG) {
      const entry = simpleTag(bytes, start, end);
      if (entry && !(entry[0] in tags)) tags[entry[0]] = entry[1];
    }
    // A cluster of known size holds only media: skip it. One of unknown size runs on to whatever
    // follows it (a Tags element too), so it is entered.
    const enter = EBML_MASTERS.has(id[0]) && !(id[0] === EBML.CLUSTER && size[0] >= 0);
    if (enter && level.depth < MAX_DEPTH) {
      levels.push({ end, depth: level.depth + 1 });
      at = start;
    } else {
      if (size[0] < 0) break; // an unknown-size element that is not a master cannot be skipped
      at = end;
    }
  }
  return tags;
}

/** @param {Uint8Array} bytes @param {number} start @param {number} end @returns {[string, string] | null} */
function simpleTag(bytes, start, end) {
  let name = null;
  let value = null;
  let at = start;
  while (at < end) {
    const id = readVint(bytes, at, true);
    const size = id && readVint(bytes, at + id[1], false);
    if (!id || !size || size[0] < 0) return null;
    const from = at + id[1] + size[1];
    const to = from + size[0];
    if (to > end) return null;
    if (id[0] === EBML.TAG_NAME) name = decodeText(bytes.subarray(from, to));
    else if ((id[0] === EBML.TAG_STRING || id[0] === EBML.TAG_BINARY) && size[0] <= MAX_TEXT_BYTES) {
      value = decodeText(bytes.subarray(from, to));
    }
    at = to;
  }
  return name !== null && value !== null ? [name, value] : null;
}

// ---------------------------------------------------------------------------------------------
// MP4 / MOV: boxes moov > udta > meta > keys + ilst

/**
 * The boxes directly inside [start, end): {type, start (content), end}.
 * @param {Uint8Array} bytes @param {number} start @param {number} end
 */
function boxes(bytes, start, end) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const found = [];
  let at = start;
  while (at + 8 <= end) {
    let size = view.getUint32(at);
    let header = 8;
    if (size === 1) { // a 64-bit size follows the type
      if (at + 16 > end) break;
      size = view.getUint32(at + 8) * 2 ** 32 + view.getUint32(at + 12);
      header = 16;
    } else if (size === 0) {
      size = end - at; // runs to the end of its parent
    }
    if (size < header || at + size > end) break;
    found.push({ type: String.fromCharCode(...bytes.subarray(at + 4, at + 8)), typeIndex: view.getUint32(at + 4),
      start: at + header, end: at + size });
    at += size;
  }
  return found;
}

/**
 * The metadata entries of an MP4/MOV file as {key: string}; the first of a key wins.
 * @param {Uint8Array} bytes
 * @returns {Record<string, string>}
 */
export function readIsobmffTags(bytes) {
  /** @type {Record<string, string>} */
  const tags = {};
  /** @type {Array<{start: number, end: number, depth: number}>} */
  const pending = [{ start: 0, end: bytes.length, depth: 0 }];
  while (pending.length) {
    const { start, end, depth } = /** @type {{start: number, end: number, depth: number}} */ (pending.pop());
    for (const box of boxes(bytes, start, end)) {
      if ((box.type === "moov" || box.type === "udta" || box.type === "trak") && depth < MAX_DEPTH) {
        pending.push({ start: box.start, end: box.end, depth: depth + 1 });
      } else if (box.type === "meta") {
        readMetaBox(bytes, box.start, box.end, tags);
      }
    }
  }
  return tags;
}

/**
 * A `meta` box: ISO files give it version and flags, QuickTime files do not; its first child
 * (hdlr) tells which.
 * @param {Uint8Array} bytes @param {number} start @param {number} end @param {Record<string, string>} tags
 */
function readMetaBox(bytes, start, end, tags) {
  const content = hasAscii(bytes, start + 4, "hdlr") ? start : start + 4;
  const children = boxes(bytes, content, end);
  const keysBox = children.find((box) => box.type === "keys");
  const keys = keysBox ? readKeys(bytes, keysBox.start, keysBox.end) : [];
  const list = children.find((box) => box.type === "ilst");
  if (!list) return;
  for (const item of boxes(bytes, list.start, list.end)) {
    const parts = boxes(bytes, item.start, item.end);
    let key = keys[item.typeIndex - 1];
    if (item.type === "----") { // iTunes freeform: mean, name, data
      const name = parts.find((box) => box.type === "name");
      key = name && name.end - name.start > 4 ? decodeText(bytes.subarray(name.start + 4, name.end)) : undefined;
    }
    const data = parts.find((box) => box.type === "data");
    if (!key || !data || data.end - data.start < 8 || data.end - data.start - 8 > MAX_TEXT_BYTES) continue;
    if (!(key in tags)) tags[key] = decodeText(bytes.subarray(data.start + 8, data.end)); // type + locale first
  }
}

/** The `keys` box: version/flags, a count, then (size, namespace, name) entries. @returns {string[]} */
function readKeys(/** @type {Uint8Array} */ bytes, /** @type {number} */ start, /** @type {number} */ end) {
  if (start + 8 > end) return [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(start + 4);
  const keys = [];
  let at = start + 8;
  for (let index = 0; index < count && at + 8 <= end; index++) {
    const size = view.getUint32(at);
    if (size < 8 || at + size > end) break;
    keys.push(UTF8.decode(bytes.subarray(at + 8, at + size)));
    at += size;
  }
  return keys;
}

// ---------------------------------------------------------------------------------------------

/**
 * Parse a metadata value: JSON, possibly encoded again as a JSON string. Null when it is not a
 * JSON object.
 * @param {string | undefined} text
 */
function parseObject(text) {
  if (typeof text !== "string") return null;
  let value = /** @type {any} */ (text);
  for (let round = 0; round <= MAX_JSON_UNWRAPS && typeof value === "string"; round++) {
    try {
      value = parseLenientJson(value.trim());
    } catch {
      return null;
    }
  }
  return value && typeof value === "object" && !Array.isArray(value) ? value : null;
}

/** @param {Record<string, string>} entries @param {string} key  the entry named `key`, any case */
function entry(entries, key) {
  const name = Object.keys(entries).find((candidate) => candidate.toLowerCase() === key);
  return name === undefined ? undefined : entries[name];
}

/**
 * The workflow and prompt a WebP, WebM/MKV or MP4/MOV file carries (each null when absent or not
 * JSON), and the kind of file; null for bytes of another kind.
 * @param {Uint8Array} bytes
 * @returns {{kind: MediaKind, workflow: any, prompt: any} | null}
 */
export function readMediaWorkflow(bytes) {
  const kind = mediaKind(bytes);
  if (kind === null || kind === "png") return null;
  const read = { webp: readWebpTexts, matroska: readMatroskaTags, isobmff: readIsobmffTags }[kind];
  const entries = read(bytes);
  return { kind, workflow: parseObject(entry(entries, "workflow")), prompt: parseObject(entry(entries, "prompt")) };
}
