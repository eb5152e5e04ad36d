// The chat page: wires the composer, the conversation, the sidebar and the knowledge-base
// panel to the service's API. Every answer is the engine's event stream (see run.js).

import { getJSON, hooks, setApiKey } from "./api.js";
import { el } from "./format.js";
import { t, translate } from "./i18n.js";
import { KnowledgeBasePanel } from "./kb.js";
import { Run } from "./run.js";
import { Sidebar } from "./sessions.js";
import { Turn } from "./turn.js";

const $ = (selector) => document.querySelector(selector);
// streamrag.names.KB_NAME_PATTERN without the reserved names (the server refuses those itself)
const KB_NAME = /^[\p{L}\p{N}_](?:[\p{L}\p{N}_.-]{0,62}[\p{L}\p{N}_-])?$/u;

const state = { kb: null, sessionId: null, run: null, pinned: true, idleMs: 0 };
const messages = $("#messages");
const question = $("#question");
const sendButton = $("#send");
const stopButton = $("#stop");
const kbSelect = $("#kb-select");

const sidebar = new Sidebar($("#sessions"), {
  onOpen: (sessionId) => openSession(sessionId),
  onDeleted: (sessionId) => {
    if (sessionId === state.sessionId) newChat();
  },
});
let kbPanel;

function keepPinned() {
  if (state.pinned) messages.scrollTop = messages.scrollHeight;
}

messages.addEventListener("scroll", () => {
  state.pinned = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80;
});

function clearMessages() {
  messages.replaceChildren(
    el("div", { class: "empty" }, el("h2", {}, t("emptyTitle")), el("p", {}, t("emptyHint"))),
  );
}

function addTurn(text) {
  messages.querySelector(".empty")?.remove();
  const turn = new Turn(text, keepPinned);
  messages.append(turn.node);
  state.pinned = true;
  keepPinned();
  return turn;
}

function setRunning(running) {
  sendButton.hidden = running;
  stopButton.hidden = !running;
  document.body.classList.toggle("running", running);
}

async function ask() {
  const text = question.value.trim();
  if (!text || state.run) return;
  question.value = "";
  const turn = addTurn(text);
  const run = new Run({
    question: text,
    kb: state.kb,
    sessionId: state.sessionId,
    idleMs: state.idleMs,
    onEvent: (event) => {
      if (event.type === "run.started") state.sessionId = event.session_id;
      turn.handle(event);
    },
    onState: (connection) => turn.setConnection(connection),
  });
  state.run = run;
  setRunning(true);
  try {
    await run.done;
  } catch (error) {
    if (error.name === "AbortError") turn.finish(turn.text, "cancelled");
    else if (error.code === "connection_lost") turn.showError("connection_lost", t("connectionLost"));
    else turn.showError(error.code ?? "network_error", error.message);
  } finally {
    state.run = null;
    setRunning(false);
    question.focus();
  }
  await sidebar.refresh(state.sessionId);
}

function stop() {
  state.run?.stop();
}

function newChat() {
  stop();
  state.sessionId = null;
  clearMessages();
  sidebar.refresh(null);
  question.focus();
}

async function openSession(sessionId) {
  stop();
  state.sessionId = sessionId;
  const session = await getJSON(`/v1/sessions/${encodeURIComponent(sessionId)}`);
  messages.replaceChildren();
  const lastKb = session.history.at(-1)?.kb;
  if (lastKb && lastKb !== state.kb) await selectKb(lastKb);
  await Promise.all(session.history.map((record) => addTurn(record.question).showRecord(record)));
  if (!session.history.length) clearMessages();
  await sidebar.refresh(sessionId);
}

async function selectKb(kb) {
  if (![...kbSelect.options].some((option) => option.value === kb)) {
    kbSelect.insertBefore(el("option", { value: kb }, kb), kbSelect.querySelector('[value=""]'));
  }
  kbSelect.value = kb;
  state.kb = kb;
  await kbPanel.show(kb);
}

/** The knowledge base the page opens on: the configured one if it exists, else the one
 * that changed last (so `streamrag demo`, then `streamrag serve`, opens on "demo"). */
function firstKb(configured, kbs) {
  if (!kbs.length || kbs.some((kb) => kb.name === configured)) return configured;
  return kbs.reduce((last, kb) => (kb.updated_at > last.updated_at ? kb : last)).name;
}

async function loadKbs(configured) {
  const kbs = await getJSON("/v1/kbs");
  const first = firstKb(configured, kbs);
  const names = [...new Set([first, ...kbs.map((kb) => kb.name)])];
  kbSelect.replaceChildren(
    ...names.map((name) => el("option", { value: name }, name)),
    el("option", { value: "" }, t("newKb")),
  );
  kbSelect.value = first;
  return first;
}

kbSelect.addEventListener("change", async () => {
  if (kbSelect.value) return selectKb(kbSelect.value);
  const name = (prompt(t("newKbPrompt")) || "").trim();
  if (name && !KB_NAME.test(name)) alert(t("invalidKbName", { name }));
  await selectKb(KB_NAME.test(name) ? name : state.kb);
});

question.addEventListener("keydown", (event) => {
  // Enter sends, Shift+Enter is a new line; never while an input method is composing.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
    event.preventDefault();
    ask();
  }
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && state.run) {
    event.preventDefault();
    stop();
  }
});
$("#composer").addEventListener("submit", (event) => {
  event.preventDefault();
  ask();
});
stopButton.addEventListener("click", stop);
$("#new-chat").addEventListener("click", newChat);

/** On a narrow screen the conversations are a drawer: ☰ opens it, a choice or a tap
 * outside closes it. */
function setSidebarOpen(open) {
  document.body.classList.toggle("sidebar-open", open);
  $("#toggle-sidebar").setAttribute("aria-expanded", String(open));
}
$("#toggle-sidebar").addEventListener("click", (event) => {
  event.stopPropagation();
  setSidebarOpen(!document.body.classList.contains("sidebar-open"));
});
$("#sidebar").addEventListener("click", (event) => {
  if (event.target.closest("#new-chat, .session .open")) setSidebarOpen(false);
});
document.addEventListener("click", (event) => {
  if (!event.target.closest("#sidebar")) setSidebarOpen(false);
});
$("#toggle-kb").addEventListener("click", () => {
  const panel = $("#kb-panel");
  panel.hidden = !panel.hidden;
  $("#toggle-kb").setAttribute("aria-expanded", String(!panel.hidden));
  if (!panel.hidden) kbPanel.refresh();
});
$("#close-kb").addEventListener("click", () => $("#toggle-kb").click());

hooks.needKey = () => {
  const dialog = $("#key-dialog");
  if (!dialog.open) dialog.showModal(); // several requests may be refused at once
};
$("#key-form").addEventListener("submit", () => {
  setApiKey($("#key-input").value.trim());
  location.reload();
});

async function start() {
  translate();
  clearMessages();
  const info = await getJSON("/v1/info");
  state.idleMs = info.heartbeat_s * 3000; // three missed heartbeats: the connection is dead
  $("#model").textContent = info.llm_model;
  const [kb] = await Promise.all([loadKbs(info.default_kb), sidebar.refresh(null)]);
  state.kb = kb;
  kbPanel = new KnowledgeBasePanel($("#kb-panel"), { kb });
  document.body.dataset.ready = "1";
  question.focus();
}

start().catch((error) => {
  const banner = $("#fatal");
  banner.textContent = `${t("errorPrefix")}: ${error.message}`;
  banner.hidden = false;
});
