// Parse an AsyncAPI document with the official parser and print its diagnostics.
//
//   node tools/asyncapi/validate.mjs docs/asyncapi.json   (or "-" for stdin)
//
// Exit status: 0 when the parser reports no error-severity diagnostic (warnings and
// hints are printed, not fatal), 1 when it does or yields no document, 2 on usage.
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import asyncapi from "@asyncapi/parser";

const { Parser, DiagnosticSeverity } = asyncapi;
const NAMES = {
  [DiagnosticSeverity.Error]: "error",
  [DiagnosticSeverity.Warning]: "warning",
  [DiagnosticSeverity.Information]: "info",
  [DiagnosticSeverity.Hint]: "hint",
};

async function readSource(arg) {
  if (arg === "-") {
    const chunks = [];
    for await (const chunk of process.stdin) chunks.push(chunk);
    return { text: Buffer.concat(chunks).toString("utf8"), source: undefined };
  }
  const path = resolve(arg);
  return { text: await readFile(path, "utf8"), source: path };
}

async function main(argv) {
  if (argv.length !== 1) {
    console.error("usage: node validate.mjs <asyncapi.json | ->");
    return 2;
  }
  const { text, source } = await readSource(argv[0]);
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(text, source ? { source } : {});
  const counts = { error: 0, warning: 0, info: 0, hint: 0 };
  for (const d of diagnostics) {
    const severity = NAMES[d.severity] ?? String(d.severity);
    counts[severity] = (counts[severity] ?? 0) + 1;
    const where = d.path && d.path.length ? d.path.join(".") : "(document)";
    console.log(`${severity} ${d.code} at ${where}: ${d.message}`);
  }
  const name = argv[0] === "-" ? "<stdin>" : argv[0];
  const version = document ? document.version() : "unparsed";
  console.log(
    `${name}: AsyncAPI ${version}, ${counts.error} error(s), ${counts.warning} warning(s), ` +
      `${counts.info} info, ${counts.hint} hint(s)`,
  );
  return counts.error > 0 || !document ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err?.stack ?? String(err));
    process.exit(1);
  },
);
