import { Module } from '@nestjs/common';
import { PurgeModule } from '../purge/purge.module';
import { TagsModule } from '../tags/tags.module';
import { AssetsController } from './assets.controller';
import { AssetsService } from './assets.service';
import { DeliveryService } from './delivery.service';
import { VariantsService } from '../images/variants.service';

@Module({
  imports: [PurgeModule, TagsModule],
  controllers: [AssetsController],
  // GET|HEAD /* is registered on Fastify directly: see delivery.route.ts.
  providers: [AssetsService, DeliveryService, VariantsService],
  exports: [DeliveryService, VariantsService],
})
export class AssetsModule {}
