import { DynamicModule, Module } from '@nestjs/common';
import { AssetsModule } from './assets/assets.module';
import { StorageModule } from './assets/storage/storage.module';
import { ConfigModule } from './config/config.module';
import type { OriginConfig } from './config/origin-config';
import { DownloadsModule } from './downloads/downloads.module';
import { HealthModule } from './health/health.module';
import { LaunchesModule } from './launches/launches.module';
import { WarmModule } from './warm/warm.module';
import { MetricsModule } from './metrics/metrics.module';
import { LoggingModule, type OriginLog } from './logging/origin-logger';
import { PurgeModule } from './purge/purge.module';
import { RedisModule } from './redis/redis.module';

@Module({})
export class OriginModule {
  static forRoot(config: OriginConfig, log: OriginLog): DynamicModule {
    return {
      module: OriginModule,
      imports: [
        ConfigModule.forRoot(config),
        LoggingModule.forRoot(log),
        MetricsModule,
        RedisModule,
        StorageModule,
        PurgeModule,
        HealthModule,
        DownloadsModule,
        // Last: its GET /* catch-all must not shadow anything (Fastify prefers static
        // routes anyway; this keeps the registration order readable too).
        AssetsModule,
        WarmModule,
        LaunchesModule,
      ],
    };
  }
}
