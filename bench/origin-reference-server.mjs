// The benchmark's reference: a bare Fastify route streaming one file, nothing else
// (no routing by key, no metadata, no metrics, no logs). Usage:
//   node bench/origin-reference-server.mjs <port> <file> <content-type>
import { createReadStream, statSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const Fastify = require('fastify');
const [port, file, contentType] = process.argv.slice(2);
const size = statSync(file).size;

const app = Fastify({ logger: false });
app.get('/*', (_request, reply) => {
  void reply.header('content-type', contentType).header('content-length', String(size)).send(createReadStream(file));
});
await app.listen({ port: Number(port), host: '127.0.0.1' });
process.stdout.write('ready\n');
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
