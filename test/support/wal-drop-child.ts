// A separate process that deletes one region from a WAL (Wal.dropRegion, what destroying a replica
// does) so that the test can kill it with SIGKILL while the deletion runs: a kill -9 of a datanode
// in the middle of a close(destroy). Usage: node --import tsx wal-drop-child.ts <wal dir> <region>
// [<kill after writes>]. Prints "dropping" right before the call and "dropped" once it returned.
// With a third argument n the process kills itself (SIGKILL) as the drop's n-th LevelDB write
// returns: a kill at a known point of the drop (1: right after its marker).
import { silentLogger } from '../../src/common/logger.js';
import { Wal } from '../../src/wal/index.js';

const [dir, regionId, killAfter] = process.argv.slice(2);
let dropping = false;
let writes = 0;
const wal = await Wal.open(dir!, silentLogger, {
  written: () => {
    if (dropping && killAfter !== undefined && ++writes === Number(killAfter)) process.kill(process.pid, 'SIGKILL');
  },
});
process.stdout.write('dropping\n');
dropping = true;
await wal.dropRegion(regionId!);
process.stdout.write('dropped\n');
await wal.close();
