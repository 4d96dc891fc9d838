#!/usr/bin/env node
import { fileURLToPath } from "node:url";

// Checked before anything else is loaded: on an older Node, tsup's modules fail to link with an
// error that names none of the reasons (zlib.crc32 appeared in 20.15, module.register in 20.6).
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 20 || (major === 20 && minor < 15)) {
  process.stderr.write(`tsup: needs Node.js 20.15 or newer; this is Node.js ${process.versions.node}\n`);
  process.exit(2);
}
// The CLI runs from one bundle through a V8 code cache (src/cli/launch.ts).
const bundle = fileURLToPath(new URL("../dist/cli/bundle.cjs", import.meta.url));
let launchBundle;
try {
  ({ launchBundle } = await import("../dist/cli/launch.js"));
  launchBundle(bundle, `${bundle}.v8cache`);
} catch (err) {
  // Exit status 1 is tsup's "internal error" (docs/reference/cli.md).
  if (launchBundle && (err?.code !== "ENOENT" || err.path !== bundle)) throw err;
  process.stderr.write(`tsup: not built (${err?.message ?? err}): run \`npm run build\` in ${fileURLToPath(new URL("..", import.meta.url))}\n`);
  process.exit(1);
}
