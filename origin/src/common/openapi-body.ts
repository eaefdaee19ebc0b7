import type { SchemaObject } from '@nestjs/swagger';
import { z } from 'zod';

/**
 * The OpenAPI request body of a route, derived from the zod schema that validates it,
 * so the two cannot drift. `io: 'input'` because this is what callers send (defaults
 * optional, not the parsed output where they are always set). OpenAPI 3.0 schema
 * objects take one `example`, not JSON Schema's `examples` list.
 */
export function openApiBody(schema: z.ZodType): SchemaObject {
  return z.toJSONSchema(schema, {
    target: 'openapi-3.0',
    io: 'input',
    override: ({ jsonSchema }) => {
      if (Array.isArray(jsonSchema.examples)) {
        jsonSchema.example = jsonSchema.examples[0];
        delete jsonSchema.examples;
      }
    },
  }) as SchemaObject;
}
