import { Controller, Get, HttpCode, HttpStatus, Param, Post, Req } from '@nestjs/common';
import { ApiAcceptedResponse, ApiBody, ApiOkResponse, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { hasScope } from '../auth/bearer-token';
import { RequireToken } from '../auth/scopes.guard';
import { JsonBody } from '../common/json-body.decorator';
import { PurgeAcceptedDto, purgeRequestOpenApiSchema, PurgeStatusDto } from './purge.dto';
import { PurgeStatusService, type PurgeStatus } from './purge-status.service';
import { PurgeService } from './purge.service';

@ApiTags('purge')
@Controller('v1/purge')
export class PurgeController {
  constructor(
    private readonly purges: PurgeService,
    private readonly statuses: PurgeStatusService,
  ) {}

  @Post()
  @RequireToken('purge')
  @HttpCode(HttpStatus.ACCEPTED)
  @ApiOperation({ summary: 'Purge URLs, path prefixes and tags on every edge' })
  @ApiBody({ schema: purgeRequestOpenApiSchema })
  @ApiAcceptedResponse({ type: PurgeAcceptedDto, description: 'On the invalidation stream (or merged with an identical pending purge)' })
  @ApiResponse({ status: 400, description: 'CDN_ERR_PURGE_INVALID naming the field (the prefix "/" also needs "confirm": "purge everything")' })
  @ApiResponse({ status: 403, description: 'CDN_ERR_FORBIDDEN: purging everything (prefix "/") or a protected tag (CDN_PROTECTED_TAGS) needs the admin scope' })
  @ApiResponse({ status: 429, description: 'CDN_ERR_RATE_LIMITED, with Retry-After' })
  @ApiResponse({ status: 503, description: 'CDN_ERR_BUS_UNAVAILABLE: Redis is down, nothing was published' })
  async purge(@JsonBody() body: unknown, @Req() request: FastifyRequest): Promise<{ id: string }> {
    const token = request.apiToken;
    const accepted = await this.purges.purgeFromApi(body, { token: token?.name ?? 'unknown', requestId: request.id }, token !== undefined && hasScope(token, 'admin'));
    return { id: accepted.id };
  }

  @Get(':id')
  @RequireToken('purge')
  @ApiOperation({ summary: 'Which edges applied a purge, and when' })
  @ApiOkResponse({ type: PurgeStatusDto })
  @ApiResponse({ status: 404, description: 'CDN_ERR_PURGE_NOT_FOUND: unknown or expired id' })
  status(@Param('id') id: string): Promise<PurgeStatus> {
    return this.statuses.status(id);
  }
}
