import { Global, Inject, Module, OnModuleInit } from '@nestjs/common';
import { ORIGIN_CONFIG, type OriginConfig, type StorageConfig } from '../../config/origin-config';
import { FilesystemStorageDriver } from './filesystem-storage.driver';
import { STORAGE_DRIVER, type StorageDriver } from './storage-driver';

/** Picks the driver for CDN_STORAGE_KIND. An S3/MinIO driver is one more case here. */
export function createStorageDriver(config: StorageConfig): StorageDriver {
  switch (config.kind) {
    case 'filesystem':
      return new FilesystemStorageDriver(config.path);
  }
}

@Global()
@Module({
  providers: [
    {
      provide: STORAGE_DRIVER,
      inject: [ORIGIN_CONFIG],
      useFactory: (config: OriginConfig) => createStorageDriver(config.storage),
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
