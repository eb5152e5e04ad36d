// The knowledge-base panel: upload with per-file progress and result, the documents (size,
// chunks, date, delete) and a search that shows ranked passages.

import { authHeaders, getJSON, messageFeeder, request } from "./api.js";
import { characters, confirmingButton, date, el, fileName } from "./format.js";
import { errorText, t } from "./i18n.js";

export class KnowledgeBasePanel {
  constructor(root, { kb }) {
    this.root = root;
    this.kb = kb;
    this.uploads = root.querySelector("#uploads");
    this.documents = root.querySelector("#documents");
    this.hits = root.querySelector("#hits");
    this.queue = Promise.resolve();
    const input = root.querySelector("#file-input");
    input.addEventListener("change", () => {
      this.upload([...input.files]);
      input.value = "";
    });
    const zone = root.querySelector("#drop-zone");
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      this.upload([...event.dataTransfer.files]);
    });
    root.querySelector("#search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.search(root.querySelector("#search-input").value.trim());
    });
  }

  /** Switch to another knowledge base. */
  async show(kb) {
    this.kb = kb;
    this.hits.replaceChildren();
    await this.refresh();
  }

  async refresh() {
    let documents = [];
    try {
      documents = await getJSON(`/v1/kbs/${encodeURIComponent(this.kb)}/documents`);
    } catch (error) {
      if (error.code !== "knowledge_base_not_found") throw error; // not created yet: empty
    }
    const rows = documents.map((doc) =>
      el("tr", { "data-doc-id": doc.doc_id },
        el("td", { class: "name", title: doc.source }, doc.title || fileName(doc.source)),
        el("td", { class: "num size" }, characters(doc.size)),
        el("td", { class: "num chunks" }, String(doc.n_chunks)),
        el("td", {}, date(doc.ingested_at)),
        el("td", {}, confirmingButton({ class: "delete icon", title: t("delete"), "aria-label": t("delete") }, "×", async () => {
          await request(`/v1/kbs/${encodeURIComponent(this.kb)}/documents/${encodeURIComponent(doc.doc_id)}`, { method: "DELETE" });
          await this.refresh();
        })),
      ),
    );
    this.documents.querySelector("tbody").replaceChildren(
      ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 5, class: "muted" }, t("noDocuments")))]),
    );
  }

  /** Upload files one request each, in order, so each has its own progress and result. */
  upload(files) {
    for (const file of files) {
      const row = new UploadRow(file);
      this.uploads.prepend(row.node);
      const kb = this.kb;
      this.queue = this.queue.then(() => sendFile(kb, file, row)).then(() => this.refresh(), () => this.refresh());
    }
    return this.queue;
  }

  async search(query) {
    if (!query) return;
    let hits, degraded;
    try {
      ({ hits, degraded } = await getJSON(`/v1/kbs/${encodeURIComponent(this.kb)}/search`, { method: "POST", json: { query, k: 10 } }));
    } catch (error) {
      this.hits.replaceChildren(el("li", { class: "error", role: "alert" }, error.message));
      return;
    }
    this.hits.replaceChildren(
      ...(hits.length
        ? hits.map((hit) =>
            el("li", { class: "hit", "data-chunk-id": hit.chunk_id },
              el("div", { class: "hit-head" },
                el("span", { class: "number" }, String(hit.rank)),
                el("span", { class: "title" }, hit.title || fileName(hit.source)),
                hit.location ? el("span", { class: "location" }, hit.location) : null,
                el("span", { class: "score" }, `${t("score")} ${hit.score.toFixed(3)}`),
              ),
              el("p", { class: "passage" }, hit.text),
            ))
        : [el("li", { class: "muted" }, t("noHits"))]),
    );
    if (degraded) this.hits.prepend(el("li", { class: "muted", role: "status" }, t("degraded")));
  }
}

/** One file's line in the upload list: a progress bar, then how its ingest ended. */
class UploadRow {
  constructor(file) {
    this.bar = el("progress", { max: 1, value: 0 });
    this.state = el("span", { class: "state" }, t("uploading", { percent: 0 }));
    this.node = el("li", { class: "upload", "data-name": file.name },
      el("span", { class: "name" }, file.name), this.bar, this.state);
    this.planned = 0;
    this.embedded = 0;
  }

  progress(fraction, text) {
    this.bar.value = fraction;
    this.state.textContent = text;
  }

  result(status, reason) {
    this.node.dataset.status = status;
    this.bar.value = 1;
    this.bar.hidden = true;
    this.state.textContent = reason ? `${t(status)}: ${reason}` : t(status);
  }
}

/** POST one file; its ingest progress arrives as server-sent events on the response. */
function sendFile(kb, file, row) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/kbs/${encodeURIComponent(kb)}/documents`);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) {
        const percent = Math.round((100 * event.loaded) / event.total);
        row.progress(0.3 * (event.loaded / event.total), t("uploading", { percent }));
      }
    };
    xhr.upload.onload = () => row.progress(0.3, t("reading"));
    const feed = messageFeeder(({ event, data }) => {
      const body = JSON.parse(data);
      if (event === "planned") row.planned += body.count;
      else if (event === "embedded") {
        row.embedded += body.count;
        const fraction = row.planned ? row.embedded / row.planned : 1;
        row.progress(0.3 + 0.7 * fraction, t("embedding", { done: row.embedded, total: row.planned }));
      } else if (event === "file") {
        row.result(body.status, body.reason);
      } else if (event === "error") row.result("failed", body.message);
    });
    xhr.onprogress = () => {
      if (xhr.status === 200) feed(xhr.responseText);
    };
    xhr.onload = () => {
      if (xhr.status === 200) feed(xhr.responseText);
      else {
        let message = `HTTP ${xhr.status}`;
        try {
          const { code, message: serverMessage } = JSON.parse(xhr.responseText).error;
          message = errorText(code, serverMessage);
        } catch {
          // keep the status
        }
        row.result("failed", message);
      }
      if (!row.node.dataset.status) row.result("failed", "no result");
      resolve();
    };
    xhr.onerror = () => {
      row.result("failed", "network error");
      resolve();
    };
    const form = new FormData();
    form.append("files", file);
    xhr.send(form);
  });
}
