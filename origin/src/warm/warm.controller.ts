import { Controller, Get, HttpCode, HttpStatus, Param, Post } from '@nestjs/common';
import { ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { RequireToken } from '../auth/scopes.guard';
import { JsonBody } from '../common/json-body.decorator';
import { WarmService, type WarmProgress } from './warm.service';

@ApiTags('warming')
@Controller('v1/warm')
export class WarmController {
  constructor(private readonly warming: WarmService) {}

  @Post()
  @RequireToken('purge')
  @HttpCode(HttpStatus.ACCEPTED)
  @ApiOperation({ summary: 'Warm objects on their home edge in every region: {urls?, prefixes?, tags?, regions?, variants?}' })
  @ApiResponse({ status: 202, description: '{id, total}: follow it at GET /v1/warm/{id}' })
  async warm(@JsonBody() body: unknown): Promise<{ id: string; total: number }> {
    const { id, total } = await this.warming.start(body);
    return { id, total };
  }

  @Get(':id')
  @RequireToken('purge')
  @ApiOperation({ summary: 'A warming job: progress per edge, warmed, failed and why' })
  progress(@Param('id') id: string): Promise<WarmProgress> {
    return this.warming.progress(id);
  }
}
