#!/usr/bin/env node
import { main } from './program.js';

void main(process.argv.slice(2), (s) => process.stderr.write(s)).then((code) => {
  process.exitCode = code;
});
