// An ObjectStore in front of another that passes every call through. Wrappers (the read cache,
// and test stores that count calls or inject faults) extend it and override only the calls they
// change, so a wrapper never has to spell out the rest of the contract again.
import type { ObjectMeta, ObjectStore, ObjectUpload } from './object-store.js';

export class DelegatingObjectStore implements ObjectStore {
  readonly description: string;

  constructor(
    readonly inner: ObjectStore,
    description: string = inner.description,
  ) {
    this.description = description;
  }

  put(key: string, data: Uint8Array): Promise<void> {
    return this.inner.put(key, data);
  }

  get(key: string): Promise<Uint8Array> {
    return this.inner.get(key);
  }

  getRange(key: string, offset: number, length: number): Promise<Uint8Array> {
    return this.inner.getRange(key, offset, length);
  }

  head(key: string): Promise<ObjectMeta | undefined> {
    return this.inner.head(key);
  }

  list(prefix: string): Promise<ObjectMeta[]> {
    return this.inner.list(prefix);
  }

  listPrefixes(prefix: string): Promise<string[]> {
    return this.inner.listPrefixes(prefix);
  }

  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }

  upload(key: string): ObjectUpload {
    return this.inner.upload(key);
  }
}
