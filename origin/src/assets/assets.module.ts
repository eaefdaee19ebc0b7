import { Module } from '@nestjs/common';
import { PurgeModule } from '../purge/purge.module';
import { AssetsController } from './assets.controller';
import { AssetsService } from './assets.service';
import { DeliveryController } from './delivery.controller';
import { DeliveryService } from './delivery.service';

@Module({
  imports: [PurgeModule],
  controllers: [AssetsController, DeliveryController],
  providers: [AssetsService, DeliveryService],
})
export class AssetsModule {}
