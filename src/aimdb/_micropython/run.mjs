#!/usr/bin/env node
// Run a Python script under the MicroPython 1.27 WebAssembly port on Node.js.
//
// Usage:
//   node run.mjs [--modules DIR] [--path DIR]... [--heap SIZE] [--timeout SECONDS]
//                (SCRIPT.py | --exec CODE) [ARGS...]
//
// Ships inside the aimdb package (aimdb/_micropython/).  Install the interpreter first
// (reproducibly, from the lock file beside this script, into a per-user directory):
//   aimdb micropython install
//
// Exit codes: 0 success; 1 the Python code raised; N from SystemExit(N);
// 2 usage error; 3 runner/interpreter failure (e.g. package not installed);
// 4 deadlock (the main code still awaits but nothing is left that could wake
// it: Node's event loop ran empty); 124 timeout.  See README.md beside this file.

import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PACKAGE = "@micropython/micropython-webassembly-pyscript";
const EXIT_USAGE = 2;
const EXIT_INTERNAL = 3;
const EXIT_DEADLOCK = 4;
const EXIT_TIMEOUT = 124;
const VFS_ROOT = "/aimdb_run";
const SKIP_DIRS = new Set([
  "__pycache__", "node_modules", ".git", ".venv", "venv", ".mypy_cache",
  ".pytest_cache", ".ruff_cache", ".tox", "build", "dist", "site",
]);

const USAGE = `usage: node run.mjs [--modules DIR] [--path DIR]... [--heap SIZE] [--timeout SECONDS]
                   (SCRIPT.py | --exec CODE) [ARGS...]

  --modules DIR      the directory whose node_modules holds the interpreter
                     (what "aimdb micropython install" prints; default: the
                     directory of this script)
  --path DIR         make DIR importable (repeatable, searched in order).
                     A directory containing __init__.py is mounted as a
                     package named after the directory (--path src/aimdb ->
                     "import aimdb"); any other directory is a sys.path
                     root, like PYTHONPATH (--path src -> "import aimdb").
  --heap SIZE        MicroPython heap size, e.g. 512k, 8m, 64m (default 8m)
  --timeout SECONDS  kill the run after SECONDS (default 60; 0 = none)
  --exec CODE        run CODE instead of a script file
  --exit-on-stdin-eof
                     stop the run (exit 0) when stdin reaches end of file, e.g.
                     when the parent process that holds the other end dies
  -h, --help         show this help

The script runs as __main__ with top-level await allowed.  This port has no
asyncio.run(); the runner adds one that schedules the coroutine and awaits it
after the script body has finished (so "asyncio.run(main())" as the last
statement works as on CPython).  Prefer "await asyncio.create_task(main())".`;

function usageError(msg) {
  process.stderr.write(`run.mjs: ${msg}\n${USAGE}\n`);
  process.exit(EXIT_USAGE);
}

function parseSize(text) {
  const m = /^(\d+)([kKmM]?)$/.exec(String(text));
  if (!m) usageError(`bad --heap size: ${text}`);
  const mult = { "": 1, k: 1024, m: 1024 * 1024 }[m[2].toLowerCase()];
  return Number(m[1]) * mult;
}

function parseArgs(argv) {
  const opts = {
    paths: [], modules: HERE, heap: 8 * 1024 * 1024, timeout: 60, exec: null, script: null, args: [], child: false, eofExit: false,
  };
  let i = 0;
  const need = (name) => {
    if (i + 1 >= argv.length) usageError(`${name} needs a value`);
    return argv[++i];
  };
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--path") opts.paths.push(need(a));
    else if (a.startsWith("--path=")) opts.paths.push(a.slice(7));
    else if (a === "--modules") opts.modules = path.resolve(need(a));
    else if (a.startsWith("--modules=")) opts.modules = path.resolve(a.slice(10));
    else if (a === "--heap") opts.heap = parseSize(need(a));
    else if (a.startsWith("--heap=")) opts.heap = parseSize(a.slice(7));
    else if (a === "--timeout" || a.startsWith("--timeout=")) {
      const v = a === "--timeout" ? need(a) : a.slice(10);
      opts.timeout = Number(v);
      if (!Number.isFinite(opts.timeout) || opts.timeout < 0) usageError(`bad --timeout: ${v}`);
    } else if (a === "--exec" || a === "-c") { opts.exec = need(a); i++; break; }
    else if (a === "--child") opts.child = true;
    else if (a === "--exit-on-stdin-eof") opts.eofExit = true;
    else if (a === "-h" || a === "--help") { process.stdout.write(USAGE + "\n"); process.exit(0); }
    else if (a === "--") { i++; if (opts.exec === null && i < argv.length) { opts.script = argv[i]; i++; } break; }
    else if (a.startsWith("-") && a !== "-") usageError(`unknown option ${a}`);
    else { opts.script = a; i++; break; }
  }
  opts.args = argv.slice(i);
  if (opts.exec === null && opts.script === null) usageError("no script or --exec given");
  return opts;
}

// ---------------------------------------------------------------- parent
// The interpreter runs synchronously on the JS thread, so a busy Python loop
// would starve any in-process timer.  The parent process therefore only
// watches the clock and kills the child that really runs MicroPython.

function runParent(argv, opts) {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "--child", ...argv], {
    stdio: opts.eofExit ? ["ignore", "inherit", "inherit"] : "inherit",
  });
  if (opts.eofExit) {
    // The parent owns stdin: the Python code never reads it, so its end means the
    // process at the other end is gone.
    process.stdin.on("data", () => {});
    process.stdin.on("end", () => { child.kill("SIGKILL"); process.exit(0); });
    process.stdin.on("error", () => { child.kill("SIGKILL"); process.exit(0); });
  }
  let timedOut = false;
  let timer = null;
  if (opts.timeout > 0) {
    timer = setTimeout(() => {
      timedOut = true;
      process.stderr.write(`run.mjs: timed out after ${opts.timeout} s, killing MicroPython\n`);
      child.kill("SIGKILL");
    }, opts.timeout * 1000);
  }
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(sig, () => child.kill(sig === "SIGINT" ? "SIGINT" : "SIGKILL"));
  }
  child.on("error", (err) => {
    process.stderr.write(`run.mjs: cannot start node: ${err.message}\n`);
    process.exit(EXIT_INTERNAL);
  });
  child.on("exit", (code, signal) => {
    if (timer) clearTimeout(timer);
    if (timedOut) process.exit(EXIT_TIMEOUT);
    if (signal) process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 9));
    process.exit(code ?? EXIT_INTERNAL);
  });
}

// ---------------------------------------------------------------- child

// Streams: MicroPython hands us one byte at a time; buffer per line so that
// output is written in whole lines and stdout/stderr keep their order.
class Sink {
  constructor(fd, transform = null) { this.fd = fd; this.bytes = []; this.transform = transform; }
  push(data) {
    for (const b of data) {
      this.bytes.push(b);
      if (b === 10 || this.bytes.length >= 8192) this.flush();
    }
  }
  flush() {
    if (this.bytes.length === 0) return;
    let buf = Buffer.from(this.bytes);
    this.bytes = [];
    if (this.transform && buf[buf.length - 1] === 10) buf = Buffer.from(this.transform(buf.toString("utf8")), "utf8");
    writeAll(this.fd, buf);
  }
}

function writeAll(fd, buf) {
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (err) {
      if (err.code !== "EAGAIN") throw err;
    }
  }
}

function collectPyFiles(hostDir, recurse, out, rel = "") {
  let entries;
  try {
    entries = fs.readdirSync(path.join(hostDir, rel), { withFileTypes: true });
  } catch (err) {
    usageError(`cannot read --path ${hostDir}: ${err.message}`);
  }
  for (const e of entries) {
    const relName = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory() || (e.isSymbolicLink() && isDir(path.join(hostDir, relName)))) {
      if (SKIP_DIRS.has(e.name) || e.name.startsWith(".")) continue;
      if (recurse(relName)) collectPyFiles(hostDir, recurse, out, relName);
    } else if (e.name.endsWith(".py")) {
      out.push(relName);
    }
  }
  return out;
}

function isDir(p) {
  try { return fs.statSync(p).isDirectory(); } catch { return false; }
}

function mkdirs(FS, dir) {
  let cur = "";
  for (const part of dir.split("/").filter(Boolean)) {
    cur += "/" + part;
    try { FS.mkdir(cur); } catch { /* exists */ }
  }
}

// Copy host directories into the virtual filesystem; return the sys.path
// entries and a map from VFS prefixes back to host paths (for tracebacks).
function mount(FS, opts) {
  const sysPath = [];
  const hostOf = [];
  const addTree = (hostDir, vfsDir, recurse) => {
    for (const rel of collectPyFiles(hostDir, recurse, [])) {
      const dest = `${vfsDir}/${rel}`;
      mkdirs(FS, path.posix.dirname(dest));
      FS.writeFile(dest, fs.readFileSync(path.join(hostDir, rel)));
    }
    mkdirs(FS, vfsDir);
  };
  // The script's own directory comes first, as in CPython: its top-level
  // modules and the packages (directories with __init__.py) beside it.
  if (opts.script !== null) {
    const hostDir = path.dirname(path.resolve(opts.script));
    const vfsDir = `${VFS_ROOT}/script`;
    addTree(hostDir, vfsDir, (rel) => fs.existsSync(path.join(hostDir, rel, "__init__.py")));
    sysPath.push(vfsDir);
    hostOf.push([vfsDir, hostDir]);
  }
  opts.paths.forEach((p, n) => {
    const hostDir = path.resolve(p);
    if (!isDir(hostDir)) usageError(`--path ${p} is not a directory`);
    const root = `${VFS_ROOT}/p${n}`;
    if (fs.existsSync(path.join(hostDir, "__init__.py"))) {
      const name = path.basename(hostDir);
      addTree(hostDir, `${root}/${name}`, () => true);
      hostOf.push([`${root}/${name}`, hostDir]);
    } else {
      addTree(hostDir, root, () => true);
      hostOf.push([root, hostDir]);
    }
    sysPath.push(root);
  });
  return { sysPath, hostOf };
}

// This port has no asyncio.run() (its loop is driven by the JS event loop).
// The shim lets CPython-style scripts ending in `asyncio.run(main())` run:
// the call schedules the coroutine, and once the main code has finished the
// runner awaits the scheduled coroutines in order, each inside a real Task
// (so wait_for/cancel work; the top-level coroutine cannot be cancelled).
const ASYNCIO_RUN_SHIM = `
import asyncio
if not hasattr(asyncio, "run"):
    asyncio._runner_pending = []
    def _asyncio_run(main, debug=None):
        asyncio._runner_pending.append(main)
    asyncio.run = _asyncio_run
    del _asyncio_run
del asyncio
`;
const ASYNCIO_RUN_DRAIN = `
import asyncio as __runner_asyncio
async def __runner_drain(q):
    while q:
        await q.pop(0)
if getattr(__runner_asyncio, "_runner_pending", None):
    await __runner_asyncio.create_task(__runner_drain(__runner_asyncio._runner_pending))
del __runner_asyncio, __runner_drain
`;

function pyStr(s) {
  return JSON.stringify(s); // a JSON string literal is a valid Python str literal
}

async function runChild(opts) {
  const modPath = path.join(opts.modules, "node_modules", PACKAGE, "micropython.mjs");
  if (!fs.existsSync(modPath)) {
    process.stderr.write(
      `run.mjs: ${PACKAGE} is not installed in ${opts.modules}; run: aimdb micropython install\n`,
    );
    process.exit(EXIT_INTERNAL);
  }
  const { loadMicroPython } = await import(pathToFileURL(modPath).href);

  let rewrite = (text) => text; // set once the mounts are known
  const out = new Sink(1);
  const err = new Sink(2, (text) => rewrite(text));
  const mp = await loadMicroPython({
    heapsize: opts.heap,
    linebuffer: false,
    stdout: (data) => { err.flush(); out.push(data); },
    stderr: (data) => { out.flush(); err.push(data); },
  });
  const flushAll = () => { out.flush(); err.flush(); };

  const { sysPath, hostOf } = mount(mp.FS, opts);
  let code;
  let mainFile;
  let displayName;
  if (opts.exec !== null) {
    code = opts.exec;
    mainFile = "-c";
    displayName = "<string>";
  } else {
    try {
      code = fs.readFileSync(opts.script, "utf8");
    } catch (e) {
      usageError(`cannot read script ${opts.script}: ${e.message}`);
    }
    mainFile = `${VFS_ROOT}/script/${path.basename(opts.script)}`;
    displayName = opts.script;
  }
  const argv = [mainFile, ...opts.args];
  mp.runPython(
    "import sys\n" +
    `sys.path[:0] = [${sysPath.map(pyStr).join(", ")}]\n` +
    `sys.argv[:] = [${argv.map(pyStr).join(", ")}]\n` +
    "del sys\n" +
    ASYNCIO_RUN_SHIM,
  );
  if (opts.exec === null) mp.globals.set("__file__", mainFile);

  rewrite = (text) => {
    let t = text.split('File "<stdin>"').join(`File "${displayName}"`);
    for (const [vfs, host] of hostOf) t = t.split(`File "${vfs}/`).join(`File "${host}/`);
    return t;
  };

  // The asyncio loop of this port is driven by JS timers and promises.  If
  // the main code awaits something that nothing will ever wake, Node's event
  // loop runs empty and Node would exit 0 with the Python code unfinished.
  process.on("beforeExit", () => {
    flushAll();
    process.stderr.write(
      "run.mjs: deadlock: the Python main code is still awaiting, but no task, timer or callback is left to wake it\n",
    );
    process.exit(EXIT_DEADLOCK);
  });

  let exitCode = 0;
  try {
    await mp.runPythonAsync(code);
    await mp.runPythonAsync(ASYNCIO_RUN_DRAIN);
  } catch (e) {
    flushAll();
    if (e && e.name === "PythonError") {
      const msg = String(e.message);
      if (e.type === "SystemExit") {
        const m = /SystemExit:? ?(.*)\n?$/s.exec(msg.trimEnd() + "\n");
        const arg = m ? m[1].trim() : "";
        if (arg === "" || arg === "None") exitCode = 0;
        else if (/^-?\d+$/.test(arg)) exitCode = Number(arg) & 0xff;
        else { process.stderr.write(arg + "\n"); exitCode = 1; }
      } else {
        err.push(Buffer.from(msg.endsWith("\n") ? msg : msg + "\n", "utf8"));
        err.flush();
        exitCode = 1;
      }
    } else {
      process.stderr.write(`run.mjs: interpreter failure: ${e && e.stack ? e.stack : e}\n`);
      exitCode = EXIT_INTERNAL;
    }
  }
  flushAll();
  // Like asyncio.run(), the run ends with the main code: tasks still pending
  // on the JS event loop are abandoned.
  process.exit(exitCode);
}

const argv = process.argv.slice(2);
const opts = parseArgs(argv);
if (opts.child) {
  runChild(opts).catch((e) => {
    process.stderr.write(`run.mjs: ${e && e.stack ? e.stack : e}\n`);
    process.exit(EXIT_INTERNAL);
  });
} else {
  runParent(argv, opts);
}
