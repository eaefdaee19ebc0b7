import { DynamicModule, Global, Module } from '@nestjs/common';
import { ORIGIN_CONFIG, type OriginConfig } from './origin-config';

/** Makes the one OriginConfig, loaded before Nest starts, injectable everywhere. */
@Global()
@Module({})
export class ConfigModule {
  static forRoot(config: OriginConfig): DynamicModule {
    return {
      module: ConfigModule,
      providers: [{ provide: ORIGIN_CONFIG, useValue: config }],
      exports: [ORIGIN_CONFIG],
    };
  }
}
