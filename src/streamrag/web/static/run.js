// One answer as the engine's event stream: started with POST /v1/chat/stream, resumed from
// the last event id after a dropped connection, stopped with POST /v1/runs/{id}/cancel.

import { ApiError, getJSON, readMessages, request } from "./api.js";

const RESUME_DELAYS_MS = [0, 250, 500, 1000, 2000, 3000, 3000, 3000];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A running answer. `onEvent(event)` gets each engine event once, in order (`seq` is checked,
 * so a resumed stream repeats nothing); `onState("reconnecting" | "live")` tells when the
 * connection is being resumed, also when nothing arrived for `idleMs` (a silently dead
 * connection). `done` resolves after the `done` event.
 */
export class Run {
  constructor({ question, kb, sessionId, idleMs = 0, onEvent, onState = () => {} }) {
    this.idleMs = idleMs;
    this.question = question;
    this.kb = kb;
    this.sessionId = sessionId;
    this.onEvent = onEvent;
    this.onState = onState;
    this.runId = null;
    this.lastEventId = null;
    this.lastSeq = -1;
    this.finished = false;
    this.aborter = new AbortController();
    this.done = this.#follow();
  }

  #receive = (message) => {
    if (message.data) this.#apply(JSON.parse(message.data), message.id);
  };

  #apply(event, eventId) {
    if (event.seq <= this.lastSeq) return; // already shown before the connection dropped
    this.lastSeq = event.seq;
    this.lastEventId = eventId ?? this.lastEventId;
    this.runId = event.run_id;
    if (event.type === "done") this.finished = true;
    this.onEvent(event);
  }

  async #follow() {
    const body = { question: this.question, kb: this.kb || null, session_id: this.sessionId };
    const response = await request("/v1/chat/stream", {
      method: "POST",
      json: body,
      signal: this.aborter.signal,
    });
    this.runId = response.headers.get("X-Run-Id");
    try {
      await readMessages(response, this.#receive, this.idleMs);
    } catch (error) {
      if (this.aborter.signal.aborted) throw error;
    }
    let attempt = 0;
    while (!this.finished) {
      if (attempt >= RESUME_DELAYS_MS.length) {
        throw new ApiError(0, "connection_lost", "connection lost");
      }
      this.onState("reconnecting");
      await sleep(RESUME_DELAYS_MS[attempt++]);
      const before = this.lastSeq;
      try {
        await this.#resume();
      } catch (error) {
        if (this.aborter.signal.aborted) throw error;
        if (error instanceof ApiError && error.code === "run_not_live") {
          await this.#fromRecord();
          break;
        }
      }
      if (this.lastSeq > before) attempt = 0; // it made progress: a fresh set of retries
    }
    this.onState("live");
  }

  async #resume() {
    // A pooled connection may be as dead as the one that failed: if no answer comes in
    // time, give up on it (the timer stops once the response has begun).
    const attempt = new AbortController();
    const abort = () => attempt.abort();
    this.aborter.signal.addEventListener("abort", abort, { once: true });
    const timer = this.idleMs ? setTimeout(abort, this.idleMs) : null;
    let response;
    try {
      response = await request(`/v1/runs/${encodeURIComponent(this.runId)}/events`, {
        headers: { "Last-Event-ID": this.lastEventId ?? `${this.runId}:-1` },
        signal: attempt.signal,
      });
    } finally {
      clearTimeout(timer);
    }
    this.onState("live");
    await readMessages(response, this.#receive, this.idleMs);
  }

  /** The run ended while we were away and is no longer live: finish from its record. */
  async #fromRecord() {
    const record = await getJSON(`/v1/runs/${encodeURIComponent(this.runId)}`);
    this.#apply({
      type: "done",
      run_id: this.runId,
      seq: this.lastSeq + 1,
      answer: record.answer,
      citations: record.citations,
      finish_reason: record.finish_reason,
      timings: record.timings,
      usage: record.usage,
      invalid_citations: record.invalid_citations,
      standalone_question: record.standalone_question,
      sources: record.retrieved,
    });
  }

  /** Ask the server to stop; the stream then ends with finish_reason "cancelled". */
  async stop() {
    if (this.finished) return;
    if (!this.runId) {
      this.aborter.abort();
      return;
    }
    try {
      await request(`/v1/runs/${encodeURIComponent(this.runId)}/cancel`, { method: "POST" });
    } catch {
      this.aborter.abort(); // the server no longer knows the run: stop listening at least
    }
  }
}
