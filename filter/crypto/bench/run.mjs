// Runs a wasm32-wasip1 program under Node's V8 (the engine Envoy embeds), e.g. the
// benchmark or a test binary: node filter/crypto/bench/run.mjs <file.wasm> [args...]
// (see ../README.md). The program's exit code becomes node's.
import { readFile } from 'node:fs/promises';
import { argv } from 'node:process';
import { WASI } from 'node:wasi';

const [file, ...args] = argv.slice(2);
if (!file) {
  console.error('usage: node run.mjs <file.wasm> [args...]');
  process.exit(2);
}
const wasi = new WASI({ version: 'preview1', args: [file, ...args], env: {} });
const module = await WebAssembly.compile(await readFile(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
