// A mocha reporter that writes where a run's time goes, per file: the wall time of each file's
// top-level suites (hooks included), each test's time and each hook's time, as JSON lines to
// $MOCHA_TIMING_OUT (default mocha-timing.jsonl), and prints the spec reporter's output as usual.
// Used to find the slow files of `make test` (docs/testing.md):
//   MOCHA_TIMING_OUT=/tmp/t.jsonl SIM_SEEDS=100 node_modules/.bin/mocha --reporter scripts/mocha-timing-reporter.cjs 'test/**/*.test.ts'
//   node scripts/mocha-timing-summary.mjs /tmp/t.jsonl
'use strict';
const { appendFileSync, writeFileSync } = require('node:fs');
const Mocha = require('mocha');
const { EVENT_SUITE_BEGIN, EVENT_SUITE_END, EVENT_TEST_END, EVENT_HOOK_BEGIN, EVENT_HOOK_END } = Mocha.Runner.constants;

function fileOf(runnable) {
  for (let s = runnable; s; s = s.parent) if (s.file) return s.file;
  return '?';
}

class TimingReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    const out = process.env.MOCHA_TIMING_OUT || 'mocha-timing.jsonl';
    writeFileSync(out, '');
    const emit = (o) => appendFileSync(out, `${JSON.stringify(o)}\n`);
    const suiteStart = new Map();
    const hookStart = new Map();
    runner.on(EVENT_SUITE_BEGIN, (suite) => {
      if (suite.parent?.root) suiteStart.set(suite, Date.now());
    });
    runner.on(EVENT_SUITE_END, (suite) => {
      const t = suiteStart.get(suite);
      if (t !== undefined) emit({ kind: 'suite', file: fileOf(suite), title: suite.title, ms: Date.now() - t, load: require('node:os').loadavg()[0] });
    });
    runner.on(EVENT_HOOK_BEGIN, (hook) => hookStart.set(hook, Date.now()));
    runner.on(EVENT_HOOK_END, (hook) => {
      const t = hookStart.get(hook);
      const ms = t === undefined ? 0 : Date.now() - t;
      if (ms >= 50) emit({ kind: 'hook', file: fileOf(hook), title: hook.fullTitle(), ms });
    });
    runner.on(EVENT_TEST_END, (test) => emit({ kind: 'test', file: fileOf(test), title: test.fullTitle(), ms: test.duration ?? 0, state: test.state }));
  }
}
module.exports = TimingReporter;
