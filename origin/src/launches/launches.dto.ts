import { openApiBody } from '../common/openapi-body';
import { launchRequestSchema } from './launch-request';

/**
 * The OpenAPI request body of POST /v1/launches, derived from the schema that validates
 * it (launch-request.ts), as purge.dto.ts does for POST /v1/purge.
 */
export const launchRequestOpenApiSchema = openApiBody(launchRequestSchema);
