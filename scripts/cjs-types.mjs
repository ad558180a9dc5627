// Writes a CommonJS twin (.d.cts) of every declaration file (.d.ts) of the built packages, with
// relative specifiers pointing at the twins (./x.js -> ./x.cjs). The packages are ES modules that
// Node 20.19+ also loads with require(); the "require" condition of each exports map points
// TypeScript at these twins, so a CommonJS consumer under `module: node16` sees CommonJS-format
// declarations instead of failing with TS1479. Usage: node scripts/cjs-types.mjs [package dir...]
import { readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../packages/', import.meta.url));
const dirs = process.argv.length > 2 ? process.argv.slice(2) : readdirSync(root).map((d) => join(root, d));
const SPECIFIER = /((?:from|import)\s*\(?\s*['"])(\.{1,2}\/[^'"]*?)\.js(['"])/g;

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

let written = 0;
for (const pkg of dirs) {
  const dist = join(pkg, 'dist');
  let files;
  try {
    files = walk(dist, []);
  } catch {
    continue; // not a built TypeScript package (the Haraka plugin)
  }
  for (const f of files) if (f.endsWith('.d.cts')) unlinkSync(f); // no twin of a deleted module
  for (const f of files) {
    if (!f.endsWith('.d.ts')) continue;
    const text = readFileSync(f, 'utf8')
      .replace(SPECIFIER, '$1$2.cjs$3')
      .replace(/\n\/\/# sourceMappingURL=.*\n?$/, '\n');
    writeFileSync(`${f.slice(0, -5)}.d.cts`, text);
    written++;
  }
}
process.stdout.write(`cjs-types: ${written} declaration files\n`);
