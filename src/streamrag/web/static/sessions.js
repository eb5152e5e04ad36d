// The sidebar of conversations: list, switch, rename in place, delete (two clicks).

import { getJSON, request } from "./api.js";
import { confirmingButton, el } from "./format.js";
import { t } from "./i18n.js";

export class Sidebar {
  constructor(list, { onOpen, onDeleted }) {
    this.list = list;
    this.onOpen = onOpen;
    this.onDeleted = onDeleted;
    this.activeId = null;
  }

  async refresh(activeId = this.activeId) {
    this.activeId = activeId;
    const sessions = await getJSON("/v1/sessions?limit=200");
    this.list.replaceChildren(
      ...(sessions.length ? sessions.map((session) => this.#item(session)) : [el("li", { class: "muted" }, t("noConversations"))]),
    );
  }

  #item(session) {
    const item = el("li", {
      class: session.session_id === this.activeId ? "session active" : "session",
      "data-id": session.session_id,
    });
    const open = el("button", { class: "open", type: "button", title: session.title, onclick: () => this.onOpen(session.session_id) }, session.title || session.session_id);
    const rename = el("button", { class: "rename icon", type: "button", title: t("rename"), "aria-label": t("rename"), onclick: () => this.#rename(item, open, session) }, "✎");
    const remove = confirmingButton({ class: "delete icon", title: t("delete"), "aria-label": t("delete") }, "×", async () => {
      await request(`/v1/sessions/${encodeURIComponent(session.session_id)}`, { method: "DELETE" });
      await this.refresh();
      this.onDeleted(session.session_id);
    });
    item.append(open, rename, remove);
    return item;
  }

  #rename(item, open, session) {
    const input = el("input", { class: "rename-input", value: session.title, maxlength: 200, "aria-label": t("rename") });
    let settled = false;
    const finish = async (save) => {
      if (settled) return;
      settled = true;
      const title = input.value.trim();
      if (save && title && title !== session.title) {
        await request(`/v1/sessions/${encodeURIComponent(session.session_id)}`, { method: "PATCH", json: { title } });
      }
      await this.refresh();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.isComposing) finish(true);
      else if (event.key === "Escape") finish(false);
    });
    input.addEventListener("blur", () => finish(true));
    open.replaceWith(input);
    input.focus();
    input.select();
  }
}
