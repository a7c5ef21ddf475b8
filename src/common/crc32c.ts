// CRC32C (Castagnoli) for every on-disk and in-object-store format: WAL records, SST blocks and
// footers, manifests, backup files. Native implementation from @node-rs/crc32.
import { crc32c as nativeCrc32c } from '@node-rs/crc32';

export function crc32c(data: Uint8Array, initial = 0): number {
  return nativeCrc32c(Buffer.from(data.buffer, data.byteOffset, data.byteLength), initial) >>> 0;
}
