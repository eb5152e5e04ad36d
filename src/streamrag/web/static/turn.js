// One question and its answer on the page: status, source cards, the streaming Markdown
// answer with citation links, how it ended, and the run's details.

import { ApiError, getJSON } from "./api.js";
import { duration, el, fileName } from "./format.js";
import { errorText, t } from "./i18n.js";
import { finishedLength, renderMarkdown, withInferred } from "./markdown.js";

const STAGES = new Set(["condensing", "retrieving", "waiting", "generating"]); // also interface string keys

export class Turn {
  /** @param {(turn: Turn) => void} onGrow called after the answer's height may have changed */
  constructor(question, onGrow = () => {}) {
    this.onGrow = onGrow;
    this.runId = null;
    this.text = "";
    this.sources = new Map(); // number → source
    this.checked = []; // the citation events of the markers, in order: is each supported?
    this.inferred = []; // the citations the server inferred for sentences without a marker
    this.pending = false;
    this.status = el("div", { class: "status", "aria-live": "polite" });
    this.cards = el("div", { class: "sources", hidden: true });
    // Finished blocks are rendered once; only the last one is re-rendered as tokens arrive.
    this.settled = el("div", { class: "settled" });
    this.growing = el("div", { class: "growing" });
    this.settledLength = 0;
    this.answer = el("div", { class: "markdown" }, this.settled, this.growing);
    this.notice = el("div", { class: "notice", hidden: true });
    this.error = el("div", { class: "error", role: "alert", hidden: true });
    this.details = el("details", { class: "run-details", hidden: true, ontoggle: () => this.#loadDetails() },
      el("summary", {}, t("details")),
      el("div", { class: "details-body" }),
    );
    this.node = el("article", { class: "turn" },
      el("div", { class: "question" }, question),
      el("div", { class: "reply" }, this.status, this.cards, this.answer, this.notice, this.error, this.details),
    );
    this.answer.addEventListener("click", (event) => {
      const link = event.target.closest("a.cite");
      if (!link) return;
      event.preventDefault();
      this.openSource(Number(link.dataset.n));
    });
  }

  /** Show one engine event. */
  handle(event) {
    switch (event.type) {
      case "run.started":
        this.#setRun(event.run_id);
        break;
      case "status":
        this.#setStatus(t(STAGES.has(event.stage) ? event.stage : "generating", { ahead: event.queue_position }));
        break;
      case "sources":
        this.showSources(event.sources);
        break;
      case "token":
        this.text += event.text;
        this.node.classList.add("streaming");
        this.#scheduleRender();
        break;
      case "error":
        this.showError(event.code, event.message);
        break;
      case "done":
        this.finish(event.answer, event.finish_reason);
        break;
      case "citation":
        (event.inferred ? this.inferred : this.checked).push(event);
        this.#linkCitations();
        break;
      default:
        break; // usage: shown on "done"; moderation: "done" ends it "moderated"
    }
  }

  /** The connection state of a live run: "reconnecting" or "live". */
  setConnection(state) {
    if (state === "reconnecting") this.#setStatus(t("reconnecting"));
    else if (this.status.textContent === t("reconnecting")) this.#setStatus(t("generating"));
  }

  showSources(sources) {
    this.sources = new Map(sources.map((source) => [source.number, source]));
    this.cards.replaceChildren(
      ...(sources.length ? sources.map((source) => this.#card(source)) : [el("p", { class: "muted" }, t("noSources"))]),
    );
    this.cards.hidden = false;
    this.#linkCitations();
  }

  /** The answer is over: its final text and how it ended. */
  finish(answer, finishReason) {
    this.text = withInferred(answer, this.inferred);
    this.settledLength = 0;
    this.settled.replaceChildren();
    this.node.classList.remove("streaming");
    this.node.dataset.finish = finishReason;
    this.#setStatus("");
    this.#render();
    if (finishReason === "cancelled") this.#notice(t("stopped"));
    else if (finishReason === "length") this.#notice(t("truncated"));
    else if (finishReason === "moderated") this.#notice(t("moderated"));
    this.details.hidden = !this.runId;
  }

  showError(code, message) {
    this.node.classList.remove("streaming");
    this.#setStatus("");
    this.error.replaceChildren(
      el("strong", {}, `${t("errorPrefix")}: `),
      errorText(code, message),
      code ? el("code", {}, code) : null,
    );
    this.error.hidden = false;
    this.onGrow(this);
  }

  /** A recorded run (a conversation from the server): answer, sources read back, details. */
  async showRecord(record) {
    this.#setRun(record.run_id);
    this.checked = record.citations.filter((citation) => !citation.inferred);
    this.inferred = record.citations.filter((citation) => citation.inferred);
    this.finish(record.answer, record.finish_reason);
    if (record.error) this.showError(record.error.code, record.error.message);
    this.record = record;
    try {
      this.showSources(await getJSON(`/v1/runs/${encodeURIComponent(record.run_id)}/sources`));
    } catch {
      // the knowledge base is gone: the answer stays, without cards
    }
  }

  /** Open source card `number`, highlight it and bring it into view. */
  openSource(number) {
    const card = this.cards.querySelector(`.source[data-n="${number}"]`);
    if (!card) return;
    for (const other of this.cards.querySelectorAll(".source.highlight")) other.classList.remove("highlight");
    card.open = true;
    card.classList.add("highlight");
    card.scrollIntoView({ block: "nearest", behavior: "smooth" });
    card.querySelector("summary").focus({ preventScroll: true });
  }

  #setRun(runId) {
    this.runId = runId;
    this.node.dataset.runId = runId;
  }

  #setStatus(text) {
    this.status.textContent = text;
    this.status.hidden = !text;
  }

  #notice(text) {
    this.notice.textContent = text;
    this.notice.hidden = false;
  }

  #card(source) {
    const title = source.missing ? source.chunk_id : source.title || fileName(source.source);
    // The heading path usually starts with the title: the card shows the rest.
    const location = source.location ?? "";
    const where = location === source.title ? "" : location.replace(`${source.title} > `, "");
    const body = source.missing
      ? [el("p", { class: "muted" }, t("sourceMissing"))]
      : [
          el("blockquote", { class: "passage" }, source.text),
          el("div", { class: "document" }, `${t("document")}: ${fileName(source.source)}`,
            source.location ? ` · ${source.location}` : ""),
        ];
    return el("details", { class: "source", "data-n": source.number },
      el("summary", { title: source.source ?? "" },
        el("span", { class: "number" }, String(source.number)),
        el("span", { class: "title" }, title),
        where ? el("span", { class: "location" }, where) : null,
      ),
      ...body,
    );
  }

  #scheduleRender() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.#render();
    });
  }

  #render() {
    const rest = this.text.slice(this.settledLength);
    const finished = this.node.dataset.finish ? rest.length : finishedLength(rest);
    if (finished) {
      this.settled.insertAdjacentHTML("beforeend", renderMarkdown(rest.slice(0, finished)));
      this.settledLength += finished;
    }
    this.growing.innerHTML = renderMarkdown(this.text.slice(this.settledLength));
    this.#linkCitations();
    this.onGrow(this);
  }

  #linkCitations() {
    let marker = 0; // the markers naming a source, in order, are the checked citations
    for (const link of this.answer.querySelectorAll("a.cite")) {
      const source = this.sources.get(Number(link.dataset.n));
      link.classList.toggle("invalid", !source); // the model cited a number it was not given
      link.title = source ? source.title || fileName(source.source ?? "") : "";
      if (!source) continue;
      if (link.classList.contains("inferred")) {
        link.title = `${t("citationInferred")}: ${link.title}`;
        continue;
      }
      const unsupported = this.checked[marker++]?.supported === false;
      link.classList.toggle("unsupported", unsupported);
      if (unsupported) link.title = `${t("citationUnsupported")}: ${link.title}`;
    }
  }

  async #loadDetails() {
    if (!this.details.open || this.details.dataset.loaded) return;
    let record = this.record;
    for (let attempt = 0; !record && attempt < 5; attempt++) {
      try {
        record = await getJSON(`/v1/runs/${encodeURIComponent(this.runId)}`);
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 404)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200)); // not written yet
      }
    }
    if (!record) return;
    this.record = record;
    this.details.dataset.loaded = "1";
    const usage = record.usage || {};
    const rows = [
      [t("ttft"), duration(record.timings?.ttft_ms)],
      [t("total"), duration(record.timings?.total_ms)],
      [t("tokens"), `${usage.prompt_tokens ?? "–"} / ${usage.completion_tokens ?? "–"}`],
      [t("model"), record.model],
      [t("finish"), record.finish_reason],
      [t("standalone"), record.standalone_question],
    ];
    const retrieved = record.retrieved.map((chunkId, index) => {
      const source = this.sources.get(index + 1);
      return el("li", { "data-chunk-id": chunkId },
        el("span", { class: "number" }, String(index + 1)),
        source && !source.missing ? `${source.title || fileName(source.source)} · ${source.text.slice(0, 160)}` : chunkId,
      );
    });
    this.details.querySelector(".details-body").replaceChildren(
      el("dl", {}, ...rows.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value ?? "–")])),
      el("div", { class: "retrieved-title" }, t("retrieved")),
      el("ol", { class: "retrieved" }, ...retrieved),
    );
  }
}
