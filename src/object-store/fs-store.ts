// ObjectStore on a local directory: the default backend, and the one tests and single-machine
// deployments use. Key "a/b/c" is the file <root>/a/b/c. put() is crash-atomic: the bytes go to
// a temporary file in the destination directory, which is fsynced, renamed over the target, and
// then the directory is fsynced, so after a crash a reader sees the old object or the new one.
// Limitation (unlike S3): a key cannot be both an object and a "directory" ("a" and "a/b").
import { randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { type FileHandle, mkdir, open, opendir, readdir, readFile, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import { checkRange, notFound, type ObjectMeta, type ObjectStore, type ObjectUpload, sortByKey, sortPrefixes, validateKey, validatePrefix } from './object-store.js';

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
    const upload = this.newUpload(key);
    try {
      await upload.write(data);
      await upload.complete();
    } catch (err) {
      await upload.abort();
      throw err;
    }
  }

  /** A temporary file next to the target, written as the chunks come, then fsynced and renamed over it (as put). */
  upload(key: string): ObjectUpload {
    return this.newUpload(key);
  }

  private newUpload(key: string): FsUpload {
    return new FsUpload(key, this.pathOf(key), (op, err) => this.mapPutError(op, key, err));
  }

  private mapPutError(op: string, key: string, err: unknown): RegionDbError {
    if (err instanceof RegionDbError) return err;
    const code = errno(err);
    if (code === 'ENOTDIR' || code === 'EEXIST' || code === 'EISDIR') return this.conflict(key, err);
    return this.ioError(op, key, err);
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
      // The size is looked up only when a read comes back short (or nothing is to be read): a
      // range inside the file — every read an SST reader makes — costs an open, one read and a
      // close, not a stat besides (a compaction reads its inputs a block at a time).
      const checkSize = async (): Promise<void> => {
        const st = await fh.stat();
        if (!st.isFile()) throw notFound(this, key);
        checkRange(this, key, offset, length, st.size);
      };
      if (length === 0) await checkSize();
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(out, done, length - done, offset + done);
        if (bytesRead === 0) {
          await checkSize(); // past the end: INVALID_ARGUMENT, as a stat first would have said
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

  /**
   * One read of the directory `prefix` ends in (its partial last segment filters the names), then
   * each subdirectory is looked into until its first object: a directory that holds none (left
   * by a crash between a delete and its pruning, or by an upload that never completed) is no
   * prefix, as on S3.
   */
  async listPrefixes(prefix: string): Promise<string[]> {
    validatePrefix(prefix);
    const slash = prefix.lastIndexOf('/');
    const baseRel = prefix.slice(0, slash + 1);
    const partial = prefix.slice(slash + 1);
    const base = baseRel === '' ? this.root : join(this.root, ...baseRel.slice(0, -1).split('/'));
    let names: string[];
    try {
      const entries = await readdir(base, { withFileTypes: true });
      names = entries.filter((e) => e.isDirectory() && !e.name.startsWith(TMP_PREFIX) && e.name.startsWith(partial)).map((e) => e.name);
    } catch (err) {
      const code = errno(err);
      if (code && MISSING.has(code)) return [];
      throw this.ioError('listPrefixes', prefix, err);
    }
    const found: string[] = [];
    let next = 0;
    const probe = async (): Promise<void> => {
      while (next < names.length) {
        const name = names[next++]!;
        if (await this.holdsObject(join(base, name))) found.push(`${baseRel}${name}/`);
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(limits.fsPrefixProbesInFlightMax, names.length) }, probe));
    } catch (err) {
      throw this.ioError('listPrefixes', prefix, err);
    }
    return sortPrefixes(found);
  }

  /** Whether an object (a file, not a temporary one) is anywhere under `dir`; stops at the first. */
  private async holdsObject(dir: string): Promise<boolean> {
    const subdirs: string[] = [];
    try {
      // The directory is read in batches and closed when the loop ends: a region's SST folder is
      // not read whole to find that it holds one.
      for await (const e of await opendir(dir)) {
        if (e.name.startsWith(TMP_PREFIX)) continue;
        if (e.isFile()) return true;
        if (e.isDirectory()) subdirs.push(join(dir, e.name));
      }
    } catch (err) {
      // Removed (pruned after its last delete) while listed: it holds nothing.
      const code = errno(err);
      if (code && MISSING.has(code)) return false;
      throw err;
    }
    for (const sub of subdirs) if (await this.holdsObject(sub)) return true;
    return false;
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

/**
 * One streaming put on the fs store. The temporary file is created at the first write (or at
 * complete(), for an empty object), in the destination directory so the rename is atomic;
 * complete() fsyncs it, renames it over the target and fsyncs the directories (docs/raft-rules.md
 * rule 5: a file is durable before anything names it). abort() closes and unlinks it.
 */
class FsUpload implements ObjectUpload {
  private fh: FileHandle | undefined;
  private tmp: string | undefined;
  /** The highest directory mkdir created for this upload, if any (its parent needs an fsync too). */
  private firstCreated: string | undefined;
  private size = 0;
  private state: 'open' | 'completing' | 'done' | 'aborted' = 'open';

  constructor(
    readonly key: string,
    private readonly path: string,
    private readonly mapError: (op: string, err: unknown) => RegionDbError,
  ) {}

  private ended(what: string): RegionDbError {
    return new RegionDbError(ErrorCode.InvalidArgument, `upload of ${this.key}: ${what} after the upload ${this.state === 'done' ? 'completed' : 'ended'}`);
  }

  /** Creates the directory and the temporary file; a concurrent delete may prune the (empty) directory between the two. */
  private async openTmp(): Promise<FileHandle> {
    if (this.fh) return this.fh;
    const dir = dirname(this.path);
    for (let attempt = 1; ; attempt++) {
      const created = await mkdir(dir, { recursive: true });
      // Keep the highest one created over the attempts: each is dir or an ancestor of it.
      if (created !== undefined && (this.firstCreated === undefined || created.length < this.firstCreated.length)) this.firstCreated = created;
      const tmp = join(dir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
      try {
        this.fh = await open(tmp, 'wx', 0o644);
        this.tmp = tmp;
        return this.fh;
      } catch (err) {
        if (errno(err) === 'ENOENT' && attempt < PUT_ATTEMPTS) continue;
        throw err;
      }
    }
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.state !== 'open') throw this.ended('write');
    try {
      const fh = await this.openTmp();
      let written = 0;
      while (written < chunk.byteLength) {
        const { bytesWritten } = await fh.write(chunk, written, chunk.byteLength - written);
        written += bytesWritten;
      }
      this.size += chunk.byteLength;
    } catch (err) {
      await this.abort();
      throw this.mapError('put', err);
    }
  }

  async complete(): Promise<ObjectMeta> {
    if (this.state !== 'open') throw this.ended('complete');
    this.state = 'completing';
    try {
      const fh = await this.openTmp();
      await fh.sync();
      this.fh = undefined;
      await fh.close();
      await rename(this.tmp!, this.path);
      this.tmp = undefined;
      // Make the rename durable, and any directories we created (each lives in its parent's entries).
      const dir = dirname(this.path);
      await fsyncDir(dir);
      if (this.firstCreated !== undefined) {
        for (let d = dir; ; d = dirname(d)) {
          await fsyncDir(dirname(d));
          if (d === this.firstCreated || d === dirname(d)) break;
        }
      }
      this.state = 'done';
      return { key: this.key, size: this.size };
    } catch (err) {
      await this.abort();
      throw this.mapError('put', err);
    }
  }

  async abort(): Promise<void> {
    if (this.state === 'done' || this.state === 'aborted') return;
    this.state = 'aborted';
    const fh = this.fh;
    const tmp = this.tmp;
    this.fh = undefined;
    this.tmp = undefined;
    // Best effort, and safe to ignore: a temporary file is never listed or read (TMP_PREFIX).
    if (fh) await fh.close().catch(() => undefined);
    if (tmp) await unlink(tmp).catch(() => undefined);
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
