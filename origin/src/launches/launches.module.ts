import { Module } from '@nestjs/common';
import { PurgeModule } from '../purge/purge.module';
import { WarmModule } from '../warm/warm.module';
import { LaunchesController } from './launches.controller';
import { LaunchesService } from './launches.service';

@Module({
  imports: [PurgeModule, WarmModule],
  controllers: [LaunchesController],
  providers: [LaunchesService],
})
export class LaunchesModule {}
