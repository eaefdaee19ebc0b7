import { Controller, Get, Head, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { Read, type ReadRequest } from './asset-requests';
import { DeliveryService } from './delivery.service';
import { RawAssetKey } from './raw-asset-key.decorator';

/**
 * Public reads. HEAD is declared explicitly (the app turns Fastify's automatic HEAD
 * routes off): the automatic one would open the file only to drain it, and would
 * replace Content-Length with 0.
 */
@Controller()
export class DeliveryController {
  constructor(private readonly delivery: DeliveryService) {}

  @Get('*')
  get(@RawAssetKey('/') key: string | null, @Read() read: ReadRequest, @Res() reply: FastifyReply): Promise<FastifyReply> {
    return this.serve(key, read, reply);
  }

  @Head('*')
  head(@RawAssetKey('/') key: string | null, @Read() read: ReadRequest, @Res() reply: FastifyReply): Promise<FastifyReply> {
    return this.serve(key, read, reply);
  }

  private async serve(key: string | null, read: ReadRequest, reply: FastifyReply): Promise<FastifyReply> {
    const response = await this.delivery.deliver(key, read);
    return reply.code(response.status).headers(response.headers).send(response.body);
  }
}
