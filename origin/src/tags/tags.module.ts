import { Module } from '@nestjs/common';
import { TagIndexService } from './tag-index.service';

@Module({
  providers: [TagIndexService],
  exports: [TagIndexService],
})
export class TagsModule {}
