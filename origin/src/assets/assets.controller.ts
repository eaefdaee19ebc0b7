import { Controller, Delete, Get, Head, HttpCode, HttpStatus, Put, Query, Res } from '@nestjs/common';
import {
  ApiBody,
  ApiConsumes,
  ApiHeader,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiQuery,
  ApiResponse,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { RequireToken } from '../auth/scopes.guard';
import type { PurgeActor } from '../purge/purge.service';
import { Actor, Upload, type UploadRequest } from './asset-requests';
import { AssetDetailsDto, AssetListDto, AssetResponseDto } from './assets.dto';
import { AssetsService, type AssetDetails, type AssetList, type AssetResponse } from './assets.service';
import { RawAssetKey } from './raw-asset-key.decorator';

const PREFIX = '/v1/assets/';

@ApiTags('assets')
@Controller('v1/assets')
export class AssetsController {
  constructor(private readonly assets: AssetsService) {}

  /** 201 when the key is new, 200 when it replaced an asset. */
  @Put('*')
  @RequireToken('upload')
  @ApiOperation({ summary: 'Upload (create or replace) an asset; streaming, verified, atomic' })
  @ApiParam({ name: '*', description: 'The key, e.g. products/shoe.jpg' })
  @ApiConsumes('application/octet-stream', 'image/*', 'text/*')
  @ApiBody({ schema: { type: 'string', format: 'binary' } })
  @ApiHeader({ name: 'Surrogate-Key', required: false, description: 'Space-separated tags' })
  @ApiHeader({ name: 'Cache-Control', required: false, description: "The asset's own policy" })
  @ApiHeader({ name: 'Content-SHA256', required: false, description: 'Hex sha256 of the body; mismatch -> 400, nothing stored' })
  @ApiHeader({ name: 'Content-MD5', required: false, description: 'Base64 MD5 of the body; mismatch -> 400, nothing stored' })
  @ApiResponse({ status: 201, type: AssetResponseDto, description: 'Created' })
  @ApiResponse({ status: 200, type: AssetResponseDto, description: 'Replaced (and purged)' })
  @ApiResponse({ status: 400, description: 'Bad key or header, checksum or content-type mismatch' })
  @ApiResponse({ status: 413, description: 'Larger than CDN_MAX_UPLOAD_BYTES' })
  @ApiResponse({ status: 503, description: 'Storage or Redis unavailable' })
  async put(
    @RawAssetKey(PREFIX) key: string | null,
    @Upload() upload: UploadRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<AssetResponse> {
    const outcome = await this.assets.put(key, upload);
    void reply.code(outcome.created ? HttpStatus.CREATED : HttpStatus.OK);
    return outcome.asset;
  }

  @Delete('*')
  @RequireToken('upload')
  @HttpCode(HttpStatus.NO_CONTENT)
  @ApiOperation({ summary: 'Delete an asset; its URL, versioned URL and tags are purged' })
  @ApiParam({ name: '*', description: 'The key' })
  @ApiNoContentResponse({ description: 'Deleted' })
  @ApiResponse({ status: 404, description: 'No such asset' })
  remove(@RawAssetKey(PREFIX) key: string | null, @Actor() actor: PurgeActor): Promise<void> {
    return this.assets.remove(key, actor);
  }

  @Get()
  @RequireToken()
  @ApiOperation({ summary: 'List assets by key prefix or by tag, in key order' })
  @ApiQuery({ name: 'prefix', required: false })
  @ApiQuery({ name: 'tag', required: false })
  @ApiQuery({ name: 'cursor', required: false })
  @ApiQuery({ name: 'limit', required: false, description: '1-1000, default 100' })
  @ApiOkResponse({ type: AssetListDto })
  list(@Query() query: unknown): Promise<AssetList> {
    return this.assets.list(query);
  }

  @Get('*')
  @RequireToken()
  @ApiOperation({ summary: "An asset's metadata" })
  @ApiParam({ name: '*', description: 'The key' })
  @ApiOkResponse({ type: AssetDetailsDto })
  @ApiResponse({ status: 404, description: 'No such asset' })
  details(@RawAssetKey(PREFIX) key: string | null): Promise<AssetDetails> {
    return this.assets.details(key);
  }

  @Head('*')
  @RequireToken()
  @ApiOperation({ summary: "Whether an asset exists (its ETag and Last-Modified as headers)" })
  @ApiParam({ name: '*', description: 'The key' })
  async exists(@RawAssetKey(PREFIX) key: string | null, @Res() reply: FastifyReply): Promise<FastifyReply> {
    const details = await this.assets.details(key);
    return reply
      .code(HttpStatus.OK)
      .headers({
        'content-type': 'application/json; charset=utf-8',
        'cache-control': 'no-store',
        etag: details.etag,
        'last-modified': new Date(details.updatedAt).toUTCString(),
      })
      .send();
  }
}
