import { Controller, HttpCode, HttpStatus, Post, UseGuards } from '@nestjs/common';
import { BearerAuthGuard } from '../auth/bearer-auth.guard';
import { JsonBody } from '../common/json-body.decorator';
import { PurgeService } from './purge.service';

@Controller('v1/purge')
@UseGuards(BearerAuthGuard)
export class PurgeController {
  constructor(private readonly purges: PurgeService) {}

  @Post()
  @HttpCode(HttpStatus.ACCEPTED)
  purge(@JsonBody() body: unknown): Promise<{ id: string }> {
    return this.purges.purgeFromApi(body);
  }
}
