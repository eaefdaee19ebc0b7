/** Free TCP ports on the loopback interface, for the native target and the tests. */
import * as net from 'node:net';
import { cdnError } from '../../model/errors';

/** Resolves true when nothing listens on host:port and we could bind it. */
export function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A port the kernel picks; distinct from every port in `taken`. */
export async function freePort(host = '127.0.0.1', taken: Set<number> = new Set()): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = net.createServer();
      server.once('error', reject);
      server.listen({ port: 0, host, exclusive: true }, () => {
        const address = server.address() as net.AddressInfo;
        server.close(() => resolve(address.port));
      });
    });
    if (!taken.has(port)) {
      taken.add(port);
      return port;
    }
  }
  throw cdnError('CDN_ERR_PORT_IN_USE', 'could not find a free port');
}

/**
 * `wanted` if it is free; otherwise a free one when `strict` is false, or a clear
 * error naming the port when the user asked for it explicitly.
 */
export async function portOrFree(wanted: number | undefined, what: string, strict: boolean, taken: Set<number>, host = '127.0.0.1'): Promise<number> {
  if (wanted !== undefined && !taken.has(wanted) && (await isPortFree(wanted, host))) {
    taken.add(wanted);
    return wanted;
  }
  if (wanted !== undefined && strict) {
    throw cdnError('CDN_ERR_PORT_IN_USE', `${host}:${wanted} (${what}) is in use; pick another port or leave the flag out to get a free one`);
  }
  return freePort(host, taken);
}
