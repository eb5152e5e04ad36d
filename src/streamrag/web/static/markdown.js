// The answer's Markdown as safe HTML, with citation markers ([1], [1, 3], 【2】) as links.

import { Marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.mjs";

// The markers the server's citation scanner accepts (streamrag/answer/citations.py), and the
// page's own "[~n]" for a citation the server inferred (spliced in by the turn).
const MARKER = /^(?:\[\s*(~?\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\s*\]|【\s*(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\s*】)/;
const INFERRED = "~";

const citations = {
  name: "citation",
  level: "inline",
  start: (src) => src.search(/[[【]\s*~?\d/),
  tokenizer(src) {
    const match = MARKER.exec(src);
    if (!match) return undefined;
    const inside = match[1] ?? match[2];
    const inferred = inside.startsWith(INFERRED);
    const numbers = inside.replace(INFERRED, "").split(/\s*[,，、]\s*/).map(Number);
    return { type: "citation", raw: match[0], numbers, inferred };
  },
  renderer: (token) =>
    token.numbers
      .map((n) => `<a class="cite${token.inferred ? " inferred" : ""}" href="#" data-n="${n}">${n}</a>`)
      .join(""),
};

/** ``text`` with the page's marker of each inferred citation (``{number, offset}``) spliced in
 * where it belongs: the end of the sentence the source supports. */
export function withInferred(text, inferred) {
  let marked = text;
  for (const { number, offset } of [...inferred].sort((a, b) => b.offset - a.offset)) {
    marked = `${marked.slice(0, offset)}[${INFERRED}${number}]${marked.slice(offset)}`;
  }
  return marked;
}

const marked = new Marked({ gfm: true, breaks: true, extensions: [citations] });

/** Sanitised HTML of an answer; citation markers become `a.cite[data-n]`. */
export function renderMarkdown(text) {
  return DOMPurify.sanitize(marked.parse(text), { FORBID_TAGS: ["style", "form", "input"] });
}

/**
 * How many leading characters of a streaming text form finished blocks: every block but the
 * last, which may still grow (a paragraph, a list, an unclosed code fence). 0 when unsure.
 */
export function finishedLength(text) {
  const tokens = marked.lexer(text);
  let last = tokens.length - 1;
  while (last >= 0 && tokens[last].type === "space") last--;
  if (last <= 0 || tokens.map((token) => token.raw).join("") !== text) return 0;
  return tokens.slice(0, last).reduce((length, token) => length + token.raw.length, 0);
}
