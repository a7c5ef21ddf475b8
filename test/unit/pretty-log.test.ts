// --log-format pretty: pino JSON lines rendered as one human line each, context kept.
import { expect } from 'chai';
import { prettyLine } from '../../src/common/pretty-log.js';

describe('pretty log format', () => {
  it('renders time, level, process, component, message and the context as key=value', () => {
    const json = JSON.stringify({ level: 30, time: Date.UTC(2026, 0, 2, 19, 50, 6, 123), pid: 1, name: 'datanode-1', component: 'region-server', regionId: '42', term: 3, msg: 'raft role changed' });
    expect(prettyLine(json, false)).to.equal('19:50:06.123 INFO  datanode-1 region-server: raft role changed regionId=42 term=3\n');
  });

  it('quotes values with spaces, prints objects as JSON and an error stack indented below', () => {
    const json = JSON.stringify({ level: 50, time: 0, name: 'metasrv', reason: 'two words', at: { a: 1 }, err: { message: 'boom', stack: 'Error: boom\n    at x' }, msg: 'failed' });
    expect(prettyLine(json, false)).to.equal('00:00:00.000 ERROR metasrv: failed reason="two words" at={"a":1}\n    Error: boom\n        at x\n');
  });

  it('passes a line that is not JSON through unchanged', () => {
    expect(prettyLine('plain text', false)).to.equal('plain text\n');
  });
});
