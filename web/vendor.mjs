// Copies the browser builds of the page's third-party modules into the package, with their
// licences. Run from this folder: `npm ci && npm run vendor`; commit what changes.
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

const target = "../src/streamrag/web/static/vendor";
const files = {
  "marked/lib/marked.esm.js": "marked.esm.js",
  "marked/LICENSE": "marked.LICENSE",
  "dompurify/dist/purify.es.mjs": "purify.es.mjs",
  "dompurify/LICENSE": "dompurify.LICENSE",
  "eventsource-parser/dist/parse.js": "eventsource-parser/parse.js",
  "eventsource-parser/dist/errors.js": "eventsource-parser/errors.js",
  "eventsource-parser/LICENSE": "eventsource-parser/LICENSE",
};

rmSync(target, { recursive: true, force: true });
for (const [from, to] of Object.entries(files)) {
  const source = join("node_modules", from);
  const destination = join(target, to);
  mkdirSync(dirname(destination), { recursive: true });
  if (to.endsWith("js")) {
    // The source maps are not shipped; drop the comments that point at them.
    const code = readFileSync(source, "utf8").replace(/\n\/\/# sourceMappingURL=\S+\s*$/, "\n");
    writeFileSync(destination, code);
  } else {
    copyFileSync(source, destination);
  }
}
const lock = JSON.parse(readFileSync("package-lock.json", "utf8"));
const versions = Object.fromEntries(
  Object.keys(JSON.parse(readFileSync("package.json", "utf8")).dependencies).map((name) => [
    name,
    lock.packages[`node_modules/${name}`].version,
  ]),
);
writeFileSync(join(target, "versions.json"), JSON.stringify(versions, null, 2) + "\n");
console.log("vendored", versions);
