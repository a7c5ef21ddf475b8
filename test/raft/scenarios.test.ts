// Table-driven interaction scenarios: each script drives a network of cores step by step, in
// the spirit of etcd-io/raft's datadriven tests. Commands:
//   nodes 1,2,3 [option=value ...] | campaign N | propose N value | tick N count | tickall count
//   propose-leader value | isolate N | cut A B | heal | restart N | transfer FROM TO | read N ctx
//   expect leader N | expect leader-among A,B | expect role N follower|leader|candidate|pre-candidate | expect term N t
//   expect applied N v1,v2 | expect read N ctx index|dropped | expect commit N index
import { expect } from 'chai';
import { roleName } from '../../src/raft/raft.js';
import { Network, type RaftOptions, bytes } from './harness.js';

interface Scenario {
  name: string;
  script: string;
}

const scenarios: Scenario[] = [
  {
    name: 'leader isolated from followers: majority elects a new leader, old one steps down, writes survive',
    script: `
      nodes 1,2,3
      campaign 1
      propose 1 a
      isolate 1
      tickall 30
      expect role 1 follower
      expect leader-among 2,3
      propose-leader b
      heal
      tickall 3
      expect role 1 follower
      expect applied 1 a,b
      expect applied 3 a,b`,
  },
  {
    name: 'node restarts with a long uncommitted tail that gets truncated',
    script: `
      nodes 1,2,3 checkQuorum=false preVote=false
      campaign 1
      propose 1 a
      isolate 1
      propose 1 lost1
      propose 1 lost2
      restart 1
      campaign 2
      propose 2 b
      heal
      tick 2 3
      expect applied 1 a,b
      expect commit 1 4`,
  },
  {
    name: 'one-way link: leader can send but cannot hear; CheckQuorum makes it step down',
    script: `
      nodes 1,2,3
      campaign 1
      cut 2 1
      cut 3 1
      tick 1 21
      expect role 1 follower`,
  },
  {
    name: 'read index through a leader transfer: old pending read is dropped, new leader serves',
    script: `
      nodes 1,2,3
      campaign 1
      propose 1 a
      isolate 1
      read 1 r1
      heal
      transfer 1 2
      tick 1 25
      expect leader 2
      expect read 1 r1 dropped
      read 2 r2
      expect read 2 r2 3`,
  },
  {
    name: 'five nodes, minority partition cannot elect; majority keeps committing',
    script: `
      nodes 1,2,3,4,5
      campaign 1
      isolate 4
      isolate 5
      tick 4 60
      tick 5 60
      expect role 4 pre-candidate
      expect term 4 1
      propose 1 x
      tick 1 1
      expect applied 3 x
      heal
      tick 1 2
      expect applied 5 x
      expect leader 1`,
  },
];

function runScenario(script: string): void {
  let net: Network | undefined;
  const lines = script
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  for (const [lineNo, line] of lines.entries()) {
    const [cmd, ...args] = line.split(/\s+/);
    const n = (i: number) => Number(args[i]);
    const where = `line ${lineNo + 1}: ${line}`;
    if (cmd === 'nodes') {
      const options: Record<string, boolean | number | string> = {};
      for (const kv of args.slice(1)) {
        const [k, v] = kv.split('=');
        options[k!] = v === 'true' ? true : v === 'false' ? false : Number.isNaN(Number(v)) ? v! : Number(v);
      }
      net = new Network(args[0]!.split(',').map(Number), options as RaftOptions);
      continue;
    }
    if (!net) throw new Error(`${where}: 'nodes' must come first`);
    switch (cmd) {
      case 'campaign':
        net.campaign(n(0));
        break;
      case 'propose':
        net.propose(n(0), args[1]!);
        break;
      case 'tick':
        net.tick(n(0), n(1));
        break;
      case 'propose-leader': {
        const leaders = net.leaders();
        expect(leaders, where).to.have.length(1);
        net.propose(leaders[0]!, args[0]!);
        break;
      }
      case 'tickall':
        net.tickAll(n(0));
        break;
      case 'isolate':
        net.isolate(n(0));
        break;
      case 'cut':
        net.cutLink(n(0), n(1));
        break;
      case 'heal':
        net.heal();
        break;
      case 'restart':
        net.restart(n(0));
        break;
      case 'transfer':
        net.raft(n(0)).transferLeader(n(1));
        net.settle();
        break;
      case 'read':
        net.raft(n(0)).readIndex(bytes(args[1]!));
        net.settle();
        break;
      case 'expect': {
        const what = args[0];
        const id = Number(args[1]);
        if (what === 'leader-among') {
          expect(net.leaders(), where).to.have.length(1);
          expect(net.leaders()[0], where).to.be.oneOf(args[1]!.split(',').map(Number));
        } else if (what === 'leader') {
          expect(net.leaders(), where).to.deep.equal([id]);
        } else if (what === 'role') {
          expect(roleName[net.raft(id).role], where).to.equal(args[2]);
        } else if (what === 'term') {
          expect(net.raft(id).term, where).to.equal(Number(args[2]));
        } else if (what === 'applied') {
          expect(net.values(id), where).to.deep.equal(args[2]!.split(','));
        } else if (what === 'commit') {
          expect(net.raft(id).log.committed, where).to.equal(Number(args[2]));
        } else if (what === 'read') {
          const states = net.node(id).readStates.filter((r) => new TextDecoder().decode(r.context) === args[2]);
          const want = args[3] === 'dropped' ? 0 : Number(args[3]);
          expect(
            states.map((r) => r.index),
            where,
          ).to.deep.equal([want]);
        } else {
          throw new Error(`${where}: unknown expectation`);
        }
        break;
      }
      default:
        throw new Error(`${where}: unknown command`);
    }
  }

}

describe('interaction scenarios (table-driven)', () => {
  for (const s of scenarios) {
    it(s.name, () => runScenario(s.script));
  }
});
