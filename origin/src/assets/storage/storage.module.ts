import { Global, Inject, Module, OnModuleInit } from '@nestjs/common';
import { ORIGIN_CONFIG, type OriginConfig, type StorageConfig } from '../../config/origin-config';
import { MetricsService } from '../../metrics/metrics.service';
import { FilesystemStorageDriver } from './filesystem-storage.driver';
import { InstrumentedStorageDriver } from './instrumented-storage.driver';
import { createS3Client, S3StorageDriver } from './s3-storage.driver';
import { STORAGE_DRIVER, type StorageDriver } from './storage-driver';

/** Picks the driver for CDN_STORAGE_KIND. */
export function createStorageDriver(config: StorageConfig): StorageDriver {
  switch (config.kind) {
    case 'filesystem':
      return new FilesystemStorageDriver(config.path);
    case 's3':
      return new S3StorageDriver(createS3Client(config), config.bucket, config.partSize);
  }
}

@Global()
@Module({
  providers: [
    {
      provide: STORAGE_DRIVER,
      inject: [ORIGIN_CONFIG, MetricsService],
      useFactory: (config: OriginConfig, metrics: MetricsService) => new InstrumentedStorageDriver(createStorageDriver(config.storage), metrics),
    },
  ],
  exports: [STORAGE_DRIVER],
})
export class StorageModule implements OnModuleInit {
  constructor(@Inject(STORAGE_DRIVER) private readonly driver: StorageDriver) {}

  onModuleInit(): Promise<void> {
    return this.driver.init();
  }
}
