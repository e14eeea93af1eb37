// @ts-check
/**
 * A small modal that asks for a name (Save as). A native <dialog>, built per question and removed
 * afterwards, so it needs no inline script (CSP) and blocks nothing else on the page the way
 * window.prompt would. Enter or "Save" answers; Escape or "Cancel" gives null.
 */

/**
 * @param {{title: string, label: string, initial: string, confirm?: string}} options
 * @returns {Promise<string | null>}  the trimmed answer, or null when cancelled or left empty
 */
export function askName({ title, label, initial, confirm = "Save" }) {
  const dialog = document.createElement("dialog");
  dialog.id = "name-dialog";
  dialog.className = "name-dialog";
  const form = document.createElement("form");
  form.method = "dialog";
  const heading = document.createElement("h2");
  heading.textContent = title;
  const field = document.createElement("label");
  field.textContent = label;
  const input = document.createElement("input");
  input.id = "name-dialog-input";
  input.type = "text";
  input.value = initial;
  input.spellcheck = false;
  input.autocomplete = "off";
  field.append(input);
  const buttons = document.createElement("div");
  buttons.className = "buttons";
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.id = "name-dialog-cancel";
  cancel.textContent = "Cancel";
  const ok = document.createElement("button");
  ok.id = "name-dialog-ok";
  ok.className = "primary";
  ok.value = "ok";
  ok.textContent = confirm;
  buttons.append(cancel, ok);
  form.append(heading, field, buttons);
  dialog.append(form);
  document.body.append(dialog);

  return new Promise((resolve) => {
    cancel.addEventListener("click", () => dialog.close(""));
    dialog.addEventListener("close", () => {
      const answer = dialog.returnValue === "ok" ? input.value.trim() : "";
      dialog.remove();
      resolve(answer || null);
    }, { once: true });
    dialog.showModal();
    input.select();
  });
}
