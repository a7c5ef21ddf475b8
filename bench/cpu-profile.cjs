// CPU profile of a whole Node process, written when it exits: for processes started by
// LocalCluster or `regiondb cluster`, where `--cpu-prof` cannot be passed (NODE_OPTIONS refuses
// it). Usage: NODE_OPTIONS="--require $PWD/bench/cpu-profile.cjs" CPU_PROFILE_DIR=/tmp/prof <cmd>
// Open the .cpuprofile files in Chrome DevTools (Performance) or speedscope.
// A window instead of the whole life: CPU_PROFILE_DELAY_MS (start that long after launch) and
// CPU_PROFILE_SECONDS (stop and write that long after the start; the process keeps running); or
// CPU_PROFILE_ON_SIGNAL=1: nothing until a SIGUSR2, which starts the profile, and a second one
// stops and writes it (bench/scale-bench.ts sends them around its idle window with SCALE_PROFILE=1).
const fs = require('node:fs');
const inspector = require('node:inspector');
const path = require('node:path');

const dir = process.env.CPU_PROFILE_DIR || process.cwd();
const delayMs = Number(process.env.CPU_PROFILE_DELAY_MS || 0);
const seconds = Number(process.env.CPU_PROFILE_SECONDS || 0);
const session = new inspector.Session();
session.connect();
let running = false;
let written = false;

function start() {
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 200 }); // µs
  session.post('Profiler.start');
  running = true;
}

function stop() {
  if (!running || written) return;
  written = true;
  // The session belongs to this thread: the callback runs synchronously, before an exit.
  session.post('Profiler.stop', (err, result) => {
    if (err) return;
    const role = path.basename(process.argv[2] || 'node').replace(/[^\w.-]/g, '_');
    fs.writeFileSync(path.join(dir, `${role}-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
  });
}

if (process.env.CPU_PROFILE_ON_SIGNAL === '1') process.on('SIGUSR2', () => (running ? stop() : start()));
else if (delayMs > 0) setTimeout(start, delayMs).unref();
else start();
if (seconds > 0) setTimeout(stop, delayMs + seconds * 1000).unref();
process.on('exit', stop);
