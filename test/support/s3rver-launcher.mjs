// Starts s3rver (a real S3-compatible HTTP server) on 127.0.0.1 for object-store tests, as a child
// process so its Koa/openssl quirks stay out of the test process. Run with
//   node --openssl-legacy-provider test/support/s3rver-launcher.mjs <port|0> <directory> [bucket]
// It creates the bucket, then prints one line "S3RVER_READY <port>" on stdout. It exits on
// SIGTERM/SIGINT, and when its stdin closes (so it never outlives a crashed parent).
import S3rver from 's3rver';

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
