// ObjectStore on a local directory: the default backend, and the one tests and single-machine
// deployments use. Key "a/b/c" is the file <root>/a/b/c. put() is crash-atomic: the bytes go to
// a temporary file in the destination directory, which is fsynced, renamed over the target, and
// then the directory is fsynced, so after a crash a reader sees the old object or the new one.
// Limitation (unlike S3): a key cannot be both an object and a "directory" ("a" and "a/b").
import { randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, readFile, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { checkRange, notFound, type ObjectMeta, type ObjectStore, sortByKey, validateKey, validatePrefix } from './object-store.js';

/** Temporary files start with this; such names are never listed and are rejected as key segments. */
const TMP_PREFIX = '.rdb-tmp-';
const PUT_ATTEMPTS = 5;

function errno(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

const MISSING = new Set(['ENOENT', 'ENOTDIR']);

export class FsObjectStore implements ObjectStore {
  readonly description: string;
  private readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
    this.description = `fs:${this.root}`;
  }

  private pathOf(key: string): string {
    validateKey(key);
    const segments = key.split('/');
    if (segments.some((s) => s.startsWith(TMP_PREFIX))) {
      throw new RegionDbError(ErrorCode.InvalidArgument, `invalid object key ${JSON.stringify(key)}: segments starting with ${TMP_PREFIX} are reserved`);
    }
    return join(this.root, ...segments);
  }

  private ioError(op: string, key: string, err: unknown): RegionDbError {
    const msg = err instanceof Error ? err.message : String(err);
    return new RegionDbError(ErrorCode.StorageUnavailable, `${this.description}: ${op} ${key} failed: ${msg}`, { cause: err });
  }

  private conflict(key: string, err: unknown): RegionDbError {
    return new RegionDbError(
      ErrorCode.InvalidArgument,
      `${this.description}: cannot put ${key}: a path component is an existing object or the key is an existing prefix (the fs backend cannot hold both "a" and "a/b")`,
      { cause: err },
    );
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const path = this.pathOf(key);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.putOnce(path, data);
        return;
      } catch (err) {
        const code = errno(err);
        // A concurrent delete may prune the (empty) destination directory between mkdir and open.
        if (code === 'ENOENT' && attempt < PUT_ATTEMPTS) continue;
        if (code === 'ENOTDIR' || code === 'EEXIST' || code === 'EISDIR') throw this.conflict(key, err);
        throw this.ioError('put', key, err);
      }
    }
  }

  private async putOnce(path: string, data: Uint8Array): Promise<void> {
    const dir = dirname(path);
    const firstCreated = await mkdir(dir, { recursive: true });
    const tmp = join(dir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
    let renamed = false;
    try {
      const fh = await open(tmp, 'wx', 0o644);
      try {
        let written = 0;
        while (written < data.byteLength) {
          const { bytesWritten } = await fh.write(data, written, data.byteLength - written);
          written += bytesWritten;
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
      renamed = true;
    } finally {
      if (!renamed) await unlink(tmp).catch(() => undefined);
    }
    // Make the rename durable, and any directories we created (each lives in its parent's entries).
    await fsyncDir(dir);
    if (firstCreated !== undefined) {
      // firstCreated is dir or one of its ancestors: fsync the parent of every directory created.
      for (let d = dir; ; d = dirname(d)) {
        await fsyncDir(dirname(d));
        if (d === firstCreated || d === dirname(d)) break;
      }
    }
  }

  async get(key: string): Promise<Uint8Array> {
    const path = this.pathOf(key);
    try {
      const buf = await readFile(path);
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } catch (err) {
      const code = errno(err);
      if ((code && MISSING.has(code)) || code === 'EISDIR') throw notFound(this, key, err);
      throw this.ioError('get', key, err);
    }
  }

  async getRange(key: string, offset: number, length: number): Promise<Uint8Array> {
    const path = this.pathOf(key);
    checkRange(this, key, offset, length);
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      const code = errno(err);
      if (code && MISSING.has(code)) throw notFound(this, key, err);
      throw this.ioError('getRange', key, err);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw notFound(this, key);
      checkRange(this, key, offset, length, st.size);
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(out, done, length - done, offset + done);
        if (bytesRead === 0) {
          throw new RegionDbError(ErrorCode.StorageUnavailable, `${this.description}: ${key} shrank while reading range [${offset}, ${offset + length})`);
        }
        done += bytesRead;
      }
      return out;
    } catch (err) {
      if (err instanceof RegionDbError) throw err;
      if (errno(err) === 'EISDIR') throw notFound(this, key, err);
      throw this.ioError('getRange', key, err);
    } finally {
      await fh.close();
    }
  }

  async head(key: string): Promise<ObjectMeta | undefined> {
    const path = this.pathOf(key);
    try {
      const st = await stat(path);
      return st.isFile() ? { key, size: st.size } : undefined;
    } catch (err) {
      const code = errno(err);
      if (code && MISSING.has(code)) return undefined;
      throw this.ioError('head', key, err);
    }
  }

  async list(prefix: string): Promise<ObjectMeta[]> {
    validatePrefix(prefix);
    const slash = prefix.lastIndexOf('/');
    const baseRel = slash < 0 ? '' : prefix.slice(0, slash);
    const base = baseRel === '' ? this.root : join(this.root, ...baseRel.split('/'));
    const out: ObjectMeta[] = [];
    try {
      await this.walk(base, prefix, out);
    } catch (err) {
      throw this.ioError('list', prefix, err);
    }
    return sortByKey(out);
  }

  private async walk(dir: string, prefix: string, out: ObjectMeta[]): Promise<void> {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      const code = errno(err);
      if (code && MISSING.has(code)) return;
      throw err;
    }
    const pending: Promise<void>[] = [];
    for (const e of entries) {
      if (e.name.startsWith(TMP_PREFIX)) continue;
      const full = join(dir, e.name);
      const key = relative(this.root, full).split(sep).join('/');
      if (e.isDirectory()) {
        // Only descend where keys below could still match the prefix.
        const asPrefix = `${key}/`;
        if (asPrefix.startsWith(prefix) || prefix.startsWith(asPrefix)) pending.push(this.walk(full, prefix, out));
      } else if (e.isFile() && key.startsWith(prefix)) {
        pending.push(
          stat(full).then(
            (st) => {
              out.push({ key, size: st.size });
            },
            (err: unknown) => {
              // Deleted between readdir and stat: simply not listed.
              if (errno(err) !== 'ENOENT') throw err;
            },
          ),
        );
      }
    }
    await Promise.all(pending);
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    try {
      await unlink(path);
    } catch (err) {
      const code = errno(err);
      // Absent, or a "directory" (a prefix of other keys, not an object): nothing to delete.
      if ((code && MISSING.has(code)) || code === 'EISDIR') return;
      if (code === 'EPERM' && (await stat(path).then((st) => st.isDirectory(), () => false))) return;
      throw this.ioError('delete', key, err);
    }
    // Prune now-empty parent directories so the tree does not accumulate husks. Best effort:
    // rmdir fails harmlessly on non-empty directories; a racing put retries on ENOENT.
    for (let d = dirname(path); d.length > this.root.length && d.startsWith(this.root + sep); d = dirname(d)) {
      try {
        await rmdir(d);
      } catch {
        break;
      }
    }
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
