// @ts-check
/**
 * The Templates menu: #templates-button opens #templates-menu with the workflows in the server's
 * workflows/ folder (GET /api/flowmill/templates, fetched each time it opens, so a file added
 * while the page is open shows up), each with its title and one-line description (from
 * workflows/index/templates.json, in its order); choosing one loads it through app.workflow.load,
 * which fits it to the view. API-format files are marked: they open laid out as a graph. Closes
 * on a choice, Escape or a click outside.
 */

/**
 * @typedef {{name: string, file?: string, title: string, description?: string, format?: string}} TemplateEntry
 */

/** @param {string} tag @param {string} className @param {string} text */
function element(tag, className, text) {
  const made = document.createElement(tag);
  made.className = className;
  made.textContent = text;
  return made;
}

/** @param {TemplateEntry} entry */
function templateItem(entry) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "template-item";
  button.setAttribute("role", "menuitem");
  button.dataset.template = entry.name;
  button.append(element("span", "template-title", entry.title || entry.name));
  if (entry.format === "api") button.append(element("span", "template-badge", "API"));
  if (entry.description) button.append(element("span", "template-description", entry.description));
  button.title = entry.file || `${entry.name}.json`;
  item.append(button);
  return item;
}

/**
 * @param {any} app
 * @param {string} name
 * @param {string} title
 */
async function loadTemplate(app, name, title) {
  try {
    const workflow = await app.api.template(name);
    app.workflow.load(workflow, { name, named: false });
  } catch (error) {
    const detail = /** @type {any} */ (error)?.body?.error?.message || String(/** @type {any} */ (error)?.message || error);
    if (app.ui?.showError) app.ui.showError(`Cannot open the template ${title}`, detail);
    else console.warn(`flowmill: cannot open the template ${title}: ${detail}`);
  }
}

/** @param {any} app */
export function installTemplatesMenu(app) {
  const button = document.getElementById("templates-button");
  const menu = document.getElementById("templates-menu");
  if (!button || !menu) return;
  menu.setAttribute("role", "menu");
  button.setAttribute("aria-expanded", "false");
  // Each opening numbers its request, so a slow reply never overwrites a newer listing.
  let request = 0;

  const close = () => {
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
  };
  const open = async () => {
    menu.hidden = false;
    button.setAttribute("aria-expanded", "true");
    const mine = ++request;
    menu.replaceChildren(element("li", "template-status", "Loading…"));
    try {
      /** @type {TemplateEntry[]} */
      const entries = await app.api.templates();
      if (mine !== request) return;
      menu.replaceChildren(...(entries.length ? entries.map(templateItem)
        : [element("li", "template-status", "No workflows in workflows/")]));
    } catch (error) {
      if (mine !== request) return;
      menu.replaceChildren(element("li", "template-status error", `Templates unavailable: ${/** @type {any} */ (error)?.message || error}`));
    }
  };

  button.addEventListener("click", () => (menu.hidden ? open() : close()));
  menu.addEventListener("click", (event) => {
    const choice = /** @type {HTMLElement | null} */ (/** @type {HTMLElement} */ (event.target).closest("[data-template]"));
    if (!choice) return;
    close();
    loadTemplate(app, /** @type {string} */ (choice.dataset.template), choice.querySelector(".template-title")?.textContent || "");
  });
  document.addEventListener("pointerdown", (event) => {
    if (!menu.hidden && !button.parentElement?.contains(/** @type {Node} */ (event.target))) close();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !menu.hidden) close();
  });
}
