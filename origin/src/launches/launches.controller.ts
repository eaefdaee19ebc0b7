import { Controller, Delete, Get, HttpCode, HttpStatus, Param, Post, Req } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { hasScope } from '../auth/bearer-token';
import { RequireToken } from '../auth/scopes.guard';
import { JsonBody } from '../common/json-body.decorator';
import { launchRequestOpenApiSchema } from './launches.dto';
import { LaunchesService, type Launch, type LaunchActor, type LaunchList } from './launches.service';

function actorOf(request: FastifyRequest): LaunchActor {
  const token = request.apiToken;
  return { name: token?.name ?? 'unknown', admin: token !== undefined && hasScope(token, 'admin'), requestId: request.id };
}

@ApiTags('launches')
@Controller('v1/launches')
export class LaunchesController {
  constructor(private readonly launches: LaunchesService) {}

  @Post()
  @RequireToken('purge')
  @HttpCode(HttpStatus.CREATED)
  @ApiOperation({ summary: 'Schedule a launch: a warm ahead of `at`, a purge at `at`, run once by whichever origin process claims each step' })
  @ApiBody({ schema: launchRequestOpenApiSchema })
  @ApiResponse({ status: 201, description: 'The launch (status scheduled): follow it at GET /v1/launches/{id}' })
  @ApiResponse({ status: 400, description: 'CDN_ERR_LAUNCH_INVALID naming the field (at in the past, a bad warm or purge body, ...)' })
  @ApiResponse({ status: 403, description: 'CDN_ERR_FORBIDDEN: the purge needs the admin scope (prefix "/", a protected tag)' })
  @ApiResponse({ status: 503, description: 'CDN_ERR_BUS_UNAVAILABLE: Redis is down, nothing was scheduled' })
  create(@JsonBody() body: unknown, @Req() request: FastifyRequest): Promise<Launch> {
    return this.launches.create(body, actorOf(request));
  }

  @Get()
  @RequireToken('purge')
  @ApiOperation({ summary: 'Launches: {upcoming (soonest first), recent (the last 7 days, latest first)}' })
  list(): Promise<LaunchList> {
    return this.launches.list();
  }

  @Get(':id')
  @RequireToken('purge')
  @ApiOperation({ summary: 'A launch: status, the warm job and purge ids, when each step ran and how late' })
  @ApiResponse({ status: 404, description: 'CDN_ERR_LAUNCH_NOT_FOUND' })
  get(@Param('id') id: string): Promise<Launch> {
    return this.launches.get(id);
  }

  @Delete(':id')
  @RequireToken('purge')
  @ApiOperation({ summary: 'Cancel a launch whose purge has not gone out (a warm already running finishes)' })
  @ApiResponse({ status: 200, description: 'The launch, status cancelled' })
  @ApiResponse({ status: 404, description: 'CDN_ERR_LAUNCH_NOT_FOUND' })
  @ApiResponse({ status: 409, description: 'CDN_ERR_LAUNCH_NOT_CANCELLABLE: the purge went out (or failed), or a warm-only launch already started' })
  cancel(@Param('id') id: string, @Req() request: FastifyRequest): Promise<Launch> {
    return this.launches.cancel(id, actorOf(request));
  }
}
