import { Module } from '@nestjs/common';
import { PurgeModule } from '../purge/purge.module';
import { SignedUrlsController } from './signed-urls.controller';
import { SignedUrlsService } from './signed-urls.service';

@Module({
  imports: [PurgeModule],
  controllers: [SignedUrlsController],
  providers: [SignedUrlsService],
})
export class DownloadsModule {}
