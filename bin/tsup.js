#!/usr/bin/env node
// Checked before anything else is loaded: on an older Node, tsup's modules fail to link with an
// error that names none of the reasons (zlib.crc32 appeared in 20.15, module.register in 20.6).
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 20 || (major === 20 && minor < 15)) {
  process.stderr.write(`tsup: needs Node.js 20.15 or newer; this is Node.js ${process.versions.node}\n`);
  process.exit(2);
}
await import("../dist/cli/main.js");
