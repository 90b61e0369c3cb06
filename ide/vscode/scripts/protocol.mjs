// Generates src/protocol.ts from docs/protocol.schema.json (the daemon's wire types, generated from the Rust types).
//   node scripts/protocol.mjs          writes src/protocol.ts
//   node scripts/protocol.mjs --check  fails if src/protocol.ts is out of date
//
// schemars puts a tagged variant's `$ref` next to the tag's properties; json-schema-to-typescript would keep only the
// siblings, so each such node becomes `allOf: [{$ref}, {siblings}]` first.
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { compile } from "json-schema-to-typescript";

const here = dirname(fileURLToPath(import.meta.url));
const schemaPath = join(here, "..", "..", "..", "docs", "protocol.schema.json");
const outPath = join(here, "..", "src", "protocol.ts");

function splitRefs(node) {
  if (Array.isArray(node)) return node.map(splitRefs);
  if (node === null || typeof node !== "object") return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) out[k] = splitRefs(v);
  const { $ref, description, ...rest } = out;
  if ($ref !== undefined && Object.keys(rest).length > 0) {
    return { ...(description ? { description } : {}), allOf: [{ $ref }, rest] };
  }
  return out;
}

const schema = splitRefs(JSON.parse(readFileSync(schemaPath, "utf8")));
const ts = await compile(schema, "ProtocolMessage", {
  additionalProperties: false,
  bannerComment:
    "// Generated from docs/protocol.schema.json by scripts/protocol.mjs (npm run protocol). Do not edit.\n",
  cwd: dirname(schemaPath),
  style: { printWidth: 120 },
});

if (process.argv.includes("--check")) {
  if (readFileSync(outPath, "utf8") !== ts) {
    console.error("src/protocol.ts is out of date with docs/protocol.schema.json: run `npm run protocol`");
    process.exit(1);
  }
} else {
  writeFileSync(outPath, ts);
}
