// @ts-check
/**
 * Reads the text chunks of a PNG (tEXt, zTXt, iTXt) and the workflow they carry.
 *
 * Flowmill's SaveImage, like ComfyUI's, writes the API prompt under the keyword "prompt" and the
 * canvas workflow under "workflow" as tEXt chunks (Pillow falls back to iTXt for text outside
 * Latin-1); other tools compress them into zTXt or iTXt. Parsing walks the chunk list with a
 * DataView and never trusts a length field beyond the buffer; decompression is capped, so a small
 * file cannot expand into gigabytes. This module knows nothing about the app.
 */

const PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
// Decompressed text beyond this is refused: real workflows are a few hundred kilobytes.
const MAX_INFLATED_BYTES = 64 * 1024 * 1024;
const LATIN1 = new TextDecoder("latin1");
const UTF8 = new TextDecoder("utf-8");
const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true });

/** @param {ArrayBuffer | Uint8Array} data */
function asBytes(data) {
  return data instanceof Uint8Array ? data : new Uint8Array(data);
}

/** True when the bytes start with the PNG signature. @param {ArrayBuffer | Uint8Array} data */
export function isPng(data) {
  const bytes = asBytes(data);
  return bytes.length >= 8 && PNG_SIGNATURE.every((value, index) => bytes[index] === value);
}

/**
 * Inflate zlib-wrapped deflate data (PNG's compression method 0), refusing oversize results.
 * @param {Uint8Array} bytes
 * @returns {Promise<Uint8Array>}
 */
async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  const reader = stream.getReader();
  /** @type {Uint8Array[]} */
  const parts = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > MAX_INFLATED_BYTES) {
      await reader.cancel();
      throw new Error(`a compressed PNG text chunk expands beyond ${MAX_INFLATED_BYTES} bytes`);
    }
    parts.push(value);
  }
  const joined = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

/**
 * tEXt is Latin-1 by the spec, but some writers put UTF-8 there: take valid UTF-8 as UTF-8.
 * @param {Uint8Array} bytes
 */
function decodeLatin1Text(bytes) {
  try {
    return STRICT_UTF8.decode(bytes);
  } catch {
    return LATIN1.decode(bytes);
  }
}

/** @param {Uint8Array} bytes @param {number} from */
function nulAt(bytes, from) {
  const index = bytes.indexOf(0, from);
  return index < 0 ? bytes.length : index;
}

/**
 * One text chunk's keyword and value, or null for a chunk that cannot be decoded.
 * @param {string} type  "tEXt" | "zTXt" | "iTXt"
 * @param {Uint8Array} data
 * @returns {Promise<[string, string] | null>}
 */
async function decodeTextChunk(type, data) {
  const keywordEnd = nulAt(data, 0);
  const keyword = LATIN1.decode(data.subarray(0, keywordEnd));
  if (type === "tEXt") return [keyword, decodeLatin1Text(data.subarray(keywordEnd + 1))];
  if (type === "zTXt") {
    if (data[keywordEnd + 1] !== 0) return null; // only compression method 0 (deflate) exists
    return [keyword, decodeLatin1Text(await inflate(data.subarray(keywordEnd + 2)))];
  }
  // iTXt: keyword, compression flag, method, language tag, translated keyword, UTF-8 text.
  const compressed = data[keywordEnd + 1] === 1;
  if (compressed && data[keywordEnd + 2] !== 0) return null;
  const languageEnd = nulAt(data, keywordEnd + 3);
  const translatedEnd = nulAt(data, languageEnd + 1);
  const text = data.subarray(translatedEnd + 1);
  return [keyword, UTF8.decode(compressed ? await inflate(text) : text)];
}

/**
 * Every tEXt, zTXt and iTXt chunk of a PNG as {keyword: text}; the first chunk of a keyword wins.
 * Chunks after a truncation are ignored; a file that is not a PNG gives an error.
 * @param {ArrayBuffer | Uint8Array} data
 * @returns {Promise<Record<string, string>>}
 */
export async function readPngText(data) {
  const bytes = asBytes(data);
  if (!isPng(bytes)) throw new Error("not a PNG file");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  /** @type {Record<string, string>} */
  const texts = {};
  let offset = PNG_SIGNATURE.length;
  while (offset + 12 <= bytes.length) {
    const length = view.getUint32(offset);
    const type = String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
    const start = offset + 8;
    if (start + length + 4 > bytes.length) break; // truncated file: keep what was read
    if (type === "IEND") break;
    if (type === "tEXt" || type === "zTXt" || type === "iTXt") {
      const entry = await decodeTextChunk(type, bytes.subarray(start, start + length));
      if (entry && !(entry[0] in texts)) texts[entry[0]] = entry[1];
    }
    offset = start + length + 4; // data, then the CRC
  }
  return texts;
}

/**
 * JSON.parse that also accepts the bare NaN / Infinity Python's json.dumps writes for odd floats
 * (they become null), without touching those words inside strings.
 * @param {string} text
 */
export function parseLenientJson(text) {
  try {
    return JSON.parse(text);
  } catch (error) {
    const repaired = text.replace(/"(?:[^"\\]|\\.)*"|-?\bInfinity\b|\bNaN\b/g,
      (match) => (match.startsWith('"') ? match : "null"));
    if (repaired === text) throw error;
    return JSON.parse(repaired);
  }
}

/**
 * The workflow a PNG carries: `workflow` (the canvas graph) and `prompt` (the API prompt),
 * each parsed, or null when the chunk is absent or not JSON.
 * @param {ArrayBuffer | Uint8Array} data
 * @returns {Promise<{workflow: any, prompt: any}>}
 */
export async function readPngWorkflow(data) {
  const texts = await readPngText(data);
  /** @param {string} key */
  const parsed = (key) => {
    if (typeof texts[key] !== "string") return null;
    try {
      const value = parseLenientJson(texts[key]);
      return value && typeof value === "object" && !Array.isArray(value) ? value : null;
    } catch {
      return null;
    }
  };
  return { workflow: parsed("workflow"), prompt: parsed("prompt") };
}
