import { Module } from '@nestjs/common';
import { AssetsModule } from '../assets/assets.module';
import { TagsModule } from '../tags/tags.module';
import { WarmController } from './warm.controller';
import { WarmService } from './warm.service';

@Module({
  imports: [TagsModule, AssetsModule],
  controllers: [WarmController],
  providers: [WarmService],
  exports: [WarmService],
})
export class WarmModule {}
