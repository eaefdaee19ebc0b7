import { ApiProperty } from '@nestjs/swagger';
import { openApiBody } from '../common/openapi-body';
import { purgeRequestSchema } from './purge-request';

/** The OpenAPI request body of POST /v1/purge, derived from the schema that validates it (purge-request.ts). */
export const purgeRequestOpenApiSchema = openApiBody(purgeRequestSchema);

/** OpenAPI shapes of the purge API's responses. */
export class PurgeAcceptedDto {
  @ApiProperty({ format: 'uuid' })
  id!: string;
}

export class EdgePurgeStatusDto {
  @ApiProperty({ example: 'eu-1' })
  id!: string;

  @ApiProperty()
  applied!: boolean;

  @ApiProperty({ type: String, nullable: true, format: 'date-time', description: 'When the origin first saw the acknowledgement (at most 200 ms late)' })
  appliedAt!: string | null;

  @ApiProperty({ type: String, nullable: true, example: '1718000000000-0' })
  lastAppliedId!: string | null;
}

export class PurgeStatusDto {
  @ApiProperty({ format: 'uuid' })
  id!: string;

  @ApiProperty({ example: '1718000000000-0' })
  streamId!: string;

  @ApiProperty({ format: 'date-time' })
  requestedAt!: string;

  @ApiProperty({ enum: ['api', 'asset'] })
  source!: string;

  @ApiProperty({ type: [String] })
  urls!: string[];

  @ApiProperty({ type: [String] })
  prefixes!: string[];

  @ApiProperty({ type: [String] })
  tags!: string[];

  @ApiProperty()
  soft!: boolean;

  @ApiProperty({ description: 'Assets currently carrying the purged tags (origin tag index)' })
  taggedAssets!: number;

  @ApiProperty({ description: 'Every configured edge applied it' })
  complete!: boolean;

  @ApiProperty({ type: [EdgePurgeStatusDto] })
  edges!: EdgePurgeStatusDto[];
}
