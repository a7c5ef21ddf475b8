// A separate process that deletes one region from a WAL (Wal.dropRegion, what destroying a replica
// does) so that the test can kill it with SIGKILL while the deletion runs: a kill -9 of a datanode
// in the middle of a close(destroy). Usage: node --import tsx wal-drop-child.ts <wal dir> <region>.
// Prints "dropping" right before the call and "dropped" once it returned.
import { silentLogger } from '../../src/common/logger.js';
import { Wal } from '../../src/wal/index.js';

const [dir, regionId] = process.argv.slice(2);
const wal = await Wal.open(dir!, silentLogger);
process.stdout.write('dropping\n');
await wal.dropRegion(regionId!);
process.stdout.write('dropped\n');
await wal.close();
