// Runs a wasm32-wasip1 command module (a cargo test binary) under Node's WASI, so the
// engine's unit tests run on the same target as stakeguard.wasm. Cargo calls it as the
// target runner: `node scripts/wasi-run.mjs TEST.wasm [ARGS...]`.
// The repository root is preopened at its own path, so tests that read files through
// absolute paths (env!("CARGO_MANIFEST_DIR")) work unchanged.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { argv, env, exit } from 'node:process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const [module, ...args] = argv.slice(2);
if (!module) {
  console.error('usage: node scripts/wasi-run.mjs MODULE.wasm [ARGS...]');
  exit(2);
}
const wasi = new WASI({
  version: 'preview1',
  args: [module, ...args],
  env,
  preopens: { [root]: root },
  returnOnExit: true,
});
const compiled = await WebAssembly.compile(await readFile(module));
const instance = await WebAssembly.instantiate(compiled, wasi.getImportObject());
exit(wasi.start(instance));
