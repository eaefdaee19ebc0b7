import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule, type OpenAPIObject } from '@nestjs/swagger';
import type { FastifyInstance } from 'fastify';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';

/**
 * OpenAPI at /docs. SwaggerModule.setup() would serve the UI through @fastify/static,
 * which this project does not install, so the document is served at
 * /docs/openapi.json and the UI page loads the two swagger-ui-dist files it needs from
 * exact routes here (no directory serving, nothing else reachable).
 */
export function registerOpenApiDocs(app: INestApplication, fastify: FastifyInstance): OpenAPIObject {
  const config = new DocumentBuilder()
    .setTitle('shop-cdn origin')
    .setDescription(
      'Asset storage, public delivery and purge control of the CDN. Errors are `{"error": "CDN_ERR_*", "message": "..."}`. ' +
        'Tokens: `Authorization: Bearer <token>` with scopes upload, purge, admin (admin = all).',
    )
    .setVersion('1')
    .addBearerAuth()
    .build();
  const document = withAssetKeys(SwaggerModule.createDocument(app, config));
  addDeliveryPaths(document);

  const json = JSON.stringify(document);
  const uiDir = swaggerUiDir();
  fastify.get('/docs/openapi.json', (_request, reply) => {
    void reply.header('content-type', 'application/json; charset=utf-8').header('cache-control', 'no-store').send(json);
  });
  fastify.get('/docs', (_request, reply) => {
    void reply.header('content-type', 'text/html; charset=utf-8').header('cache-control', 'no-store').send(DOCS_PAGE);
  });
  for (const [file, type] of [
    ['swagger-ui.css', 'text/css; charset=utf-8'],
    ['swagger-ui-bundle.js', 'text/javascript; charset=utf-8'],
  ] as const) {
    fastify.get(`/docs/${file}`, (_request, reply) => {
      void reply.header('content-type', type).header('cache-control', 'public, max-age=3600').send(createReadStream(join(uiDir, file)));
    });
  }
  return document;
}

function swaggerUiDir(): string {
  // swagger-ui-dist comes with @nestjs/swagger.
  return join(require.resolve('swagger-ui-dist/package.json'), '..');
}

/** Nest documents the raw-key routes as `/v1/assets/*`; name the parameter `key`. */
function withAssetKeys(document: OpenAPIObject): OpenAPIObject {
  const paths: OpenAPIObject['paths'] = {};
  for (const [path, item] of Object.entries(document.paths)) {
    const renamed = path.replace(/\/(?:\*|\{\*\}|\{path\})$/, '/{key}');
    const text = renamed === path ? JSON.stringify(item) : JSON.stringify(item).replace(/"name":"(?:\*|path)"/g, '"name":"key"');
    paths[renamed] = JSON.parse(text) as OpenAPIObject['paths'][string];
  }
  return { ...document, paths };
}

function addDeliveryPaths(document: OpenAPIObject): void {
  const keyParam = { name: 'key', in: 'path' as const, required: true, schema: { type: 'string' }, description: 'e.g. products/shoe.jpg' };
  const responses = {
    '200': { description: 'The bytes, with ETag (sha256), Last-Modified, Cache-Control, Surrogate-Key, Accept-Ranges: bytes' },
    '206': { description: 'One byte range (Content-Range); several ranges get 200 with the whole asset' },
    '304': { description: 'If-None-Match (wins) or If-Modified-Since matched' },
    '404': { description: 'No such asset (Cache-Control: public, max-age=5)' },
    '416': { description: 'Range past the end (Content-Range: bytes */size)' },
  };
  const operation = (summary: string) => ({
    tags: ['delivery'],
    summary,
    parameters: [keyParam],
    responses,
  });
  document.paths['/{key}'] = {
    get: operation('Public delivery of an asset (what edges fetch)'),
    head: operation('Headers of an asset'),
  };
  document.paths['/_v/{sha256}/{key}'] = {
    get: {
      ...operation('Content-addressed delivery: Cache-Control public, max-age=31536000, immutable'),
      parameters: [{ name: 'sha256', in: 'path' as const, required: true, schema: { type: 'string' } }, keyParam],
    },
  };
}

const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>shop-cdn origin API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<noscript>The OpenAPI document is at <a href="/docs/openapi.json">/docs/openapi.json</a>.</noscript>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({ url: '/docs/openapi.json', dom_id: '#swagger-ui' });</script>
</body>
</html>
`;
