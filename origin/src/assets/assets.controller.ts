import { Controller, Delete, HttpCode, HttpStatus, Put, Res, UseGuards } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { BearerAuthGuard } from '../auth/bearer-auth.guard';
import { AssetsService, type AssetResponse } from './assets.service';
import { RawAssetKey } from './raw-asset-key.decorator';
import { Upload, type UploadRequest } from './asset-requests';

const PREFIX = '/v1/assets/';

@Controller('v1/assets')
@UseGuards(BearerAuthGuard)
export class AssetsController {
  constructor(private readonly assets: AssetsService) {}

  /** 201 when the key is new, 200 when it replaced an asset. */
  @Put('*')
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
  @HttpCode(HttpStatus.NO_CONTENT)
  remove(@RawAssetKey(PREFIX) key: string | null): Promise<void> {
    return this.assets.remove(key);
  }
}
