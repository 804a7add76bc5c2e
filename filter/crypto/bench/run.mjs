// Runs a wasm32-wasip1 program under Node's V8 (the engine Envoy embeds), e.g. the
// benchmark or a test binary: node filter/crypto/bench/run.mjs <file.wasm> [args...]
// (see ../README.md). The program's exit code becomes node's.
//
// A program that links the filter (filter/path-bench) also imports the proxy-wasm host calls
// and exports the filter's `_initialize`: the imports are stubs that throw (the program runs the
// filter's pure logic, which makes no host call), and `_initialize` is hidden from WASI, which
// starts a program through `_start` only.
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
const imports = wasi.getImportObject();
for (const { module: from, name } of WebAssembly.Module.imports(module)) {
  if (from === 'wasi_snapshot_preview1') continue;
  (imports[from] ??= {})[name] = () => {
    throw new Error(`host call ${from}.${name} is not available here`);
  };
}
const instance = await WebAssembly.instantiate(module, imports);
const exports = { ...instance.exports };
if ('_start' in exports) delete exports._initialize;
process.exitCode = wasi.start({ exports });
