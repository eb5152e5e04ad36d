// The service's HTTP API as the page uses it: JSON calls, server-sent event streams, the key.

import { errorText } from "./i18n.js";
import { createParser } from "./vendor/eventsource-parser/parse.js";

const KEY_STORAGE = "streamrag.apiKey";

/** An error the API answered with: `{"error": {"code", "message"}}`, or a network failure. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Called with no arguments when the server wants an API key (set by the page). */
export const hooks = { needKey: () => {} };

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

export function authHeaders() {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function failure(response) {
  let code = `http_${response.status}`;
  let message = response.statusText || code;
  try {
    const body = await response.json();
    code = body.error?.code ?? code;
    message = body.error?.message ?? message;
  } catch {
    // not our JSON error shape: keep the status line
  }
  if (response.status === 401) hooks.needKey();
  return new ApiError(response.status, code, errorText(code, message));
}

/** Send a request; resolve to the Response when it is 2xx, else throw an ApiError. */
export async function request(path, { method = "GET", json, headers = {}, signal } = {}) {
  const init = { method, signal, headers: { ...authHeaders(), ...headers } };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  return response;
}

/** The JSON body of a request (see `request`). */
export async function getJSON(path, options) {
  return (await request(path, options)).json();
}

/**
 * Read a server-sent event stream to its end, calling `onMessage({id, event, data})` per
 * message. Rejects when the connection breaks (a TypeError from fetch) or, with `idleMs`,
 * when nothing at all arrives for that long (the server sends heartbeats, so the connection
 * is dead even if no error says so).
 */
export async function readMessages(response, onMessage, idleMs = 0) {
  const parser = createParser({ onEvent: onMessage });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    let timer;
    const stalled = new Promise((_, reject) => {
      if (idleMs) timer = setTimeout(() => reject(new ApiError(0, "stream_stalled", "no data")), idleMs);
    });
    let chunk;
    try {
      chunk = await Promise.race([reader.read(), stalled]);
    } catch (error) {
      reader.cancel().catch(() => {});
      throw error;
    } finally {
      clearTimeout(timer);
    }
    if (chunk.done) return;
    parser.feed(chunk.value);
  }
}

/** Feed a growing text (an XHR's responseText) to an event parser, part by part. */
export function messageFeeder(onMessage) {
  const parser = createParser({ onEvent: onMessage });
  let seen = 0;
  return (text) => {
    parser.feed(text.slice(seen));
    seen = text.length;
  };
}
