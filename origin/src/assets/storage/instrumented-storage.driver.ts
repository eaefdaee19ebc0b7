import type { Readable } from 'node:stream';
import { CdnError } from '../../../../infra/model/errors';
import type { MetricsService } from '../../metrics/metrics.service';
import type { AssetMetadata, ByteRange, ListOptions, ListPage, PutOptions, PutResult, StorageDriver } from './storage-driver';

/**
 * Times every driver operation and counts the storage's own failures. Client faults
 * raised inside a put (413, checksum or type mismatch, interrupted body) are 4xx and
 * not storage errors, so they are not counted as such.
 */
export class InstrumentedStorageDriver implements StorageDriver {
  readonly kind: StorageDriver['kind'];

  readonly localPath?: (metadata: AssetMetadata) => Promise<string | null>;

  constructor(
    private readonly inner: StorageDriver,
    private readonly metrics: MetricsService,
  ) {
    this.kind = inner.kind;
    // (only where the inner driver has local files)
    const localPath = inner.localPath?.bind(inner);
    if (localPath) this.localPath = (metadata) => this.timed('localPath', () => localPath(metadata));
  }

  init(): Promise<void> {
    return this.inner.init();
  }

  check(): Promise<void> {
    return this.timed('check', () => this.inner.check());
  }

  async put(key: string, body: Readable, options: PutOptions): Promise<PutResult> {
    const result = await this.timed('put', () => this.inner.put(key, body, options));
    this.metrics.observeUpload(result.asset.size);
    return result;
  }

  stat(key: string): Promise<AssetMetadata | null> {
    return this.timed('stat', () => this.inner.stat(key));
  }

  read(metadata: AssetMetadata, range?: ByteRange): Promise<Readable | null> {
    return this.timed('read', () => this.inner.read(metadata, range));
  }

  delete(key: string): Promise<AssetMetadata | null> {
    return this.timed('delete', () => this.inner.delete(key));
  }

  list(options: ListOptions): Promise<ListPage> {
    return this.timed('list', () => this.inner.list(options));
  }

  private async timed<T>(operation: string, call: () => Promise<T>): Promise<T> {
    const started = process.hrtime.bigint();
    let failed = false;
    try {
      return await call();
    } catch (err) {
      failed = !(err instanceof CdnError) || (err.httpStatus ?? 500) >= 500;
      throw err;
    } finally {
      this.metrics.observeStorage(this.kind, operation, Number(process.hrtime.bigint() - started) / 1e9, failed);
    }
  }
}
