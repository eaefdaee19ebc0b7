import type { SchemaObject } from '@nestjs/swagger';
import { z } from 'zod';
import { launchRequestSchema } from './launch-request';

/**
 * The OpenAPI request body of POST /v1/launches, derived from the schema that validates
 * it (launch-request.ts), as purge.dto.ts does for POST /v1/purge.
 */
export const launchRequestOpenApiSchema = z.toJSONSchema(launchRequestSchema, {
  target: 'openapi-3.0',
  io: 'input',
  override: ({ jsonSchema }) => {
    if (Array.isArray(jsonSchema.examples)) {
      jsonSchema.example = jsonSchema.examples[0];
      delete jsonSchema.examples;
    }
  },
}) as SchemaObject;
