// Starts s3rver (a real S3-compatible HTTP server) on 127.0.0.1 for object-store tests, as a child
// process so its Koa/openssl quirks stay out of the test process. Run with
//   node --openssl-legacy-provider test/support/s3rver-launcher.mjs <port|0> <directory> [bucket]
// It creates the bucket, then prints one line "S3RVER_READY <port>" on stdout. It exits on
// SIGTERM/SIGINT, and when its stdin closes (so it never outlives a crashed parent).
import { createRequire } from 'node:module';
import S3rver from 's3rver';

// s3rver 3.7.1 answers a listing with a delimiter (ListObjectsV2 Delimiter "/", which
// ObjectStore.listPrefixes sends) without looking into folders two or more levels below the
// prefix, so a folder whose objects all lie that deep (regions/<id>/ holds only manifest/… and
// sst/…) is never named; S3 names it. Such a listing is answered here from the listing without a
// delimiter (which reads every folder under the prefix), folded into folders as S3 folds it.
// s3rver's paging is kept: objects count toward a page, folders all come in the first one.
// test/conformance/object-store-suite.ts "listPrefixes names each folder…" fails without this.
const FilesystemStore = createRequire(import.meta.url)('s3rver/lib/stores/filesystem.js');
const listObjects = FilesystemStore.prototype.listObjects;
FilesystemStore.prototype.listObjects = async function listObjectsFoldingDeepKeys(bucket, options) {
  const delimiter = options.delimiter ?? '';
  if (delimiter === '') return listObjects.call(this, bucket, options);
  const prefix = options.prefix ?? '';
  const maxKeys = options.maxKeys ?? Number.POSITIVE_INFINITY;
  const all = await listObjects.call(this, bucket, { ...options, delimiter: '', maxKeys: Number.POSITIVE_INFINITY });
  const folders = new Set();
  const objects = [];
  let isTruncated = false;
  for (const object of all.objects) {
    const at = object.key.indexOf(delimiter, prefix.length);
    if (at >= 0) folders.add(object.key.slice(0, at + delimiter.length));
    else if (objects.length < maxKeys) objects.push(object);
    else {
      isTruncated = true;
      break;
    }
  }
  return { objects, commonPrefixes: [...folders].sort(), isTruncated };
};

const [portArg, directory, bucket = 'regiondb-test'] = process.argv.slice(2);
if (portArg === undefined || directory === undefined) {
  process.stderr.write('usage: s3rver-launcher.mjs <port|0> <directory> [bucket]\n');
  process.exit(2);
}

const server = new S3rver({
  address: '127.0.0.1',
  port: Number(portArg),
  directory,
  silent: true,
  configureBuckets: [{ name: bucket }],
});

let stopping = false;
async function stop(code) {
  if (stopping) return;
  stopping = true;
  try {
    await server.close();
  } catch {
    // not running yet
  }
  process.exit(code);
}

process.on('SIGTERM', () => void stop(0));
process.on('SIGINT', () => void stop(0));
process.stdin.on('end', () => void stop(0));
process.stdin.on('error', () => void stop(0));
process.stdin.resume();

try {
  const address = await server.run();
  process.stdout.write(`S3RVER_READY ${address.port}\n`);
} catch (err) {
  process.stderr.write(`s3rver failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
}
