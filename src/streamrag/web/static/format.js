// Small display helpers shared by the views.

import { t } from "./i18n.js";

/** A new element: `el("div", {class: "x"}, "text", child)`. Text is never parsed as HTML. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== undefined && child !== null));
  return node;
}

export function duration(ms) {
  if (ms === undefined || ms === null) return "–";
  return ms < 1000 ? t("ms", { value: Math.round(ms) }) : t("s", { value: (ms / 1000).toFixed(2) });
}

/** A document's length: the characters of its text (a file's bytes would mislead for
 * Chinese, 3 bytes a character, and a JSONL line has no file of its own). */
export function characters(count) {
  return t("characters", { count: count.toLocaleString() });
}

export function date(iso) {
  const value = new Date(iso);
  if (Number.isNaN(value.getTime())) return iso;
  return value.toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
}

/** The file name of a stored path (uploads are stored under hashed folders). */
export function fileName(path) {
  return String(path).split(/[\\/]/).pop();
}

/** A delete button that asks once more ("Delete?") and runs `action` on the second click. */
export function confirmingButton(attributes, label, action) {
  const button = el("button", { type: "button", ...attributes }, label);
  let timer = null;
  button.addEventListener("click", async () => {
    if (!button.classList.contains("confirm")) {
      button.classList.add("confirm");
      button.textContent = t("confirmDelete");
      timer = setTimeout(() => {
        button.classList.remove("confirm");
        button.textContent = label;
      }, 4000);
      return;
    }
    clearTimeout(timer);
    button.disabled = true;
    await action();
  });
  return button;
}
