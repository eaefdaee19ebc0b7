import { Controller, HttpCode, HttpStatus, Post, Req } from '@nestjs/common';
import { ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { RequireToken } from '../auth/scopes.guard';
import { JsonBody } from '../common/json-body.decorator';
import { SignedUrlsService, type SignedUrl } from './signed-urls.service';

@ApiTags('downloads')
@Controller('v1/signed-urls')
export class SignedUrlsController {
  constructor(private readonly signedUrls: SignedUrlsService) {}

  @Post()
  @RequireToken('sign')
  @HttpCode(HttpStatus.CREATED)
  @ApiOperation({ summary: 'A signed download URL: {key, ttl, maxUses?, clientIp?} (docs/downloads.md)' })
  @ApiResponse({ status: 201, description: '{url, key, tokenId, expiresAt, maxUses}' })
  @ApiResponse({ status: 400, description: 'CDN_ERR_BODY_INVALID naming the field (a key outside downloads.prefixes, a ttl above downloads.maxTtl)' })
  sign(@JsonBody() body: unknown, @Req() request: FastifyRequest): SignedUrl {
    return this.signedUrls.sign(body, { token: request.apiToken?.name ?? 'unknown', requestId: request.id });
  }

  @Post('revoke')
  @RequireToken('sign')
  @HttpCode(HttpStatus.ACCEPTED)
  @ApiOperation({ summary: 'Revoke download tokens by id, or every token of keys issued until now: {tokenIds?, keys?}' })
  @ApiResponse({ status: 202, description: '{id}: a purge id; GET /v1/purge/{id} says which edges applied it' })
  @ApiResponse({ status: 503, description: 'CDN_ERR_BUS_UNAVAILABLE: Redis is down, nothing was published' })
  revoke(@JsonBody() body: unknown, @Req() request: FastifyRequest): Promise<{ id: string }> {
    return this.signedUrls.revoke(body, { token: request.apiToken?.name ?? 'unknown', requestId: request.id });
  }
}
