import { Module } from '@nestjs/common';
import { TagsModule } from '../tags/tags.module';
import { PurgeStatusService } from './purge-status.service';
import { PurgeController } from './purge.controller';
import { PurgeService } from './purge.service';

@Module({
  imports: [TagsModule],
  controllers: [PurgeController],
  providers: [PurgeService, PurgeStatusService],
  exports: [PurgeService],
})
export class PurgeModule {}
