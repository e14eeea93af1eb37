// @ts-check
/**
 * The only place where Flowmill overrides prototypes of the vendored, unmodified
 * @comfyorg/litegraph 0.17.2 (frontend.md §6). Each patch states why it exists, and the module
 * checks that the library still looks like the version the patches were written against: on a
 * mismatch it warns loudly and leaves the library alone rather than patching blind. Its sibling
 * text_not_markup.js, installed the same way, closes litegraph's HTML sinks (workflow text is
 * never parsed as markup).
 *
 * Patches:
 *  1. NumberWidget.onClick: the value prompt evaluated arithmetic with `eval`, which the page's
 *     Content-Security-Policy (`script-src 'self'`) forbids (every edit logged a CSP violation and
 *     "2*8" silently failed). It now goes through a small arithmetic parser instead.
 */
import { LGraph, LiteGraph, NumberWidget } from "../../vendor/litegraph/litegraph.es.js";

const EXPECTED = "@comfyorg/litegraph 0.17.2";

/** @param {any} _app */
export function applyLitegraphPatches(_app) {
  const problems = versionProblems();
  if (problems.length) {
    console.warn(`flowmill: the vendored litegraph does not look like ${EXPECTED} (${problems.join("; ")}); `
      + "its patches in web/js/patches/litegraph_patches.js were NOT applied. Re-check them against the new version.");
    return;
  }
  patchNumberPrompt();
}

/** Markers of 0.17.2: the schema versions it writes and the exact code the patches replace. */
function versionProblems() {
  const problems = [];
  if (LiteGraph.VERSION !== 0.4) problems.push(`LiteGraph.VERSION is ${LiteGraph.VERSION}, expected 0.4`);
  if (LGraph.serialisedSchemaVersion !== 1) problems.push("LGraph.serialisedSchemaVersion is not 1");
  if (typeof LiteGraph.canvasNavigationMode !== "string") problems.push("LiteGraph.canvasNavigationMode is missing");
  const onClick = String(NumberWidget?.prototype?.onClick ?? "");
  if (!onClick.includes("canvas.prompt(") || !onClick.includes("eval(")) {
    problems.push("NumberWidget.prototype.onClick changed");
  }
  return problems;
}

function patchNumberPrompt() {
  /** Same behaviour as 0.17.2 (arrows step, the middle opens a prompt) without eval. */
  NumberWidget.prototype.onClick = function onClick({ e, node, canvas }) {
    const x = e.canvasX - node.pos[0];
    const width = this.width || node.size[0];
    const delta = x < 40 ? -1 : x > width - 40 ? 1 : 0;
    const step = this.options.step2 || (this.options.step || 10) * 0.1;
    if (delta) {
      this.setValue(this.value + delta * step, { e, node, canvas });
      return;
    }
    canvas.prompt("Value", this.value, (/** @type {string} */ text) => {
      const value = evaluateArithmetic(text);
      if (Number.isFinite(value)) this.setValue(value, { e, node, canvas });
    }, e);
  };
}

/**
 * Value of a plain arithmetic expression (numbers, + - * /, parentheses, unary signs); NaN when
 * the text is anything else. Recursive descent over the text, so nothing is ever executed.
 * @param {string} text
 * @returns {number}
 */
export function evaluateArithmetic(text) {
  const source = String(text ?? "").replace(/\s+/g, "");
  let at = 0;
  const fail = () => { throw new SyntaxError(`not arithmetic: ${source}`); };
  const number = () => {
    const match = /^(\d+\.?\d*|\.\d+)(e[+-]?\d+)?/i.exec(source.slice(at));
    if (!match) fail();
    at += /** @type {RegExpExecArray} */ (match)[0].length;
    return Number(/** @type {RegExpExecArray} */ (match)[0]);
  };
  /** @returns {number} */
  const factor = () => {
    const char = source[at];
    if (char === "-" || char === "+") {
      at++;
      return char === "-" ? -factor() : factor();
    }
    if (char === "(") {
      at++;
      const value = sum();
      if (source[at++] !== ")") fail();
      return value;
    }
    return number();
  };
  const product = () => {
    let value = factor();
    while (source[at] === "*" || source[at] === "/") {
      const operator = source[at++];
      const right = factor();
      value = operator === "*" ? value * right : value / right;
    }
    return value;
  };
  /** @returns {number} */
  const sum = () => {
    let value = product();
    while (source[at] === "+" || source[at] === "-") {
      const operator = source[at++];
      const right = product();
      value = operator === "+" ? value + right : value - right;
    }
    return value;
  };
  try {
    const value = sum();
    return at === source.length ? value : NaN;
  } catch {
    return NaN;
  }
}
