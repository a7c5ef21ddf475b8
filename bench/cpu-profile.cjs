// CPU profile of a whole Node process, written when it exits: for processes started by
// LocalCluster or `regiondb cluster`, where `--cpu-prof` cannot be passed (NODE_OPTIONS refuses
// it). Usage: NODE_OPTIONS="--require $PWD/bench/cpu-profile.cjs" CPU_PROFILE_DIR=/tmp/prof <cmd>
// Open the .cpuprofile files in Chrome DevTools (Performance) or speedscope.
const fs = require('node:fs');
const inspector = require('node:inspector');
const path = require('node:path');

const dir = process.env.CPU_PROFILE_DIR || process.cwd();
const session = new inspector.Session();
session.connect();
session.post('Profiler.enable');
session.post('Profiler.setSamplingInterval', { interval: 200 }); // µs
session.post('Profiler.start');
process.on('exit', () => {
  // The session belongs to this thread: the callback runs synchronously, before the exit.
  session.post('Profiler.stop', (err, result) => {
    if (err) return;
    const role = path.basename(process.argv[2] || 'node').replace(/[^\w.-]/g, '_');
    fs.writeFileSync(path.join(dir, `${role}-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
  });
});
