/**
 * `pulumi up` fails unless the stack serves: after the instances, a readiness check
 * (a Pulumi dynamic resource) polls the balancer's public readiness answer,
 * GET /.well-known/cdn-ready (balancer/render.ts READY_PATH: 200 when every edge has
 * passed its health check and is in rotation, 503 otherwise), until it answers 200,
 * and fails with a message saying what it last saw and where a failed instance
 * bootstrap leaves its mark (/var/lib/cdn/bootstrap.failed, see cloud-init.ts).
 *
 * Pulumi serializes the provider's functions into the engine's dynamic provider
 * host, so what they call uses Node's built-ins only, required inside the functions
 * (a captured module object would be serialized property by property).
 */
import * as pulumi from '@pulumi/pulumi';

export interface ReadinessInstance {
  /** The unit group (balancer, origin, edge-eu-west-1-1, ...). */
  name: string;
  id: string;
  region: string;
}

export interface ReadinessInputs {
  /** The readiness URL: the balancer's public base URL + READY_PATH. */
  url: string;
  /** A Host header (and TLS server name) to send: a name the balancer serves when the spec restricts hosts. */
  host?: string;
  timeoutSeconds: number;
  intervalSeconds: number;
  /** Each request's own time limit. */
  requestTimeoutSeconds: number;
  /** The stack's instances: the failure message says how to look at each one's bootstrap. */
  instances: ReadinessInstance[];
  /** What changed since the last check (the artefact, the instances' ids): a change checks again. */
  revision: string;
}

export interface ReadinessOutputs extends ReadinessInputs {
  attempts: number;
  seconds: number;
}

/** Where a failed bootstrap writes the failing step (cloud-init.ts writes it). */
export const BOOTSTRAP_FAILED = '/var/lib/cdn/bootstrap.failed';

/**
 * Polls `url` until it answers 200 or the time is up; throws an Error whose message
 * names the last answer and how to find a failed bootstrap. TLS certificates are not
 * verified: the balancer is reached by its address, which its certificate does not
 * name, and the check sends nothing secret and reads only the status.
 */
export async function waitUntilReady(inputs: ReadinessInputs): Promise<{ attempts: number; seconds: number }> {
  const started = Date.now();
  const deadline = started + inputs.timeoutSeconds * 1000;
  let attempts = 0;
  let last = 'no answer yet';
  for (;;) {
    attempts++;
    last = await probeOnce(inputs);
    if (last === '200') return { attempts, seconds: Math.round((Date.now() - started) / 1000) };
    if (Date.now() + inputs.intervalSeconds * 1000 > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, inputs.intervalSeconds * 1000));
  }
  throw new Error(readinessFailure(inputs, last, attempts));
}

/** One GET: '200', another status ('503 not ready'), or what went wrong ('connect ECONNREFUSED ...'). */
function probeOnce(inputs: ReadinessInputs): Promise<string> {
  const u = new URL(inputs.url);
  const client = u.protocol === 'https:' ? require('node:https') : require('node:http');
  return new Promise((resolve) => {
    let settled = false;
    const done = (what: string) => {
      if (!settled) {
        settled = true;
        resolve(what);
      }
    };
    const req = client.request(
      {
        hostname: u.hostname,
        port: u.port || undefined,
        path: `${u.pathname}${u.search}`,
        method: 'GET',
        headers: { 'User-Agent': 'cdn-readiness-check', ...(inputs.host ? { Host: inputs.host } : {}) },
        timeout: inputs.requestTimeoutSeconds * 1000,
        agent: false,
        ...(u.protocol === 'https:' ? { rejectUnauthorized: false, ...(inputs.host ? { servername: inputs.host } : {}) } : {}),
      },
      (res: { statusCode?: number; setEncoding(e: string): void; on(event: string, f: (chunk?: string) => void): void }) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          if (body.length < 200) body += chunk;
        });
        res.on('end', () => done(res.statusCode === 200 ? '200' : `${res.statusCode} ${body.trim().slice(0, 80)}`.trim()));
      },
    );
    req.on('timeout', () => {
      req.destroy(new Error(`no answer within ${inputs.requestTimeoutSeconds}s`));
    });
    req.on('error', (err: Error) => done(err.message));
    req.end();
  });
}

/** The failure message: what the balancer last said, what that means, where to look. */
export function readinessFailure(inputs: ReadinessInputs, last: string, attempts: number): string {
  const meaning = /^503\b/.test(last)
    ? 'the balancer serves, but not every edge has passed its health check (an edge that did not boot, or cannot reach the origin)'
    : /^\d{3}\b/.test(last)
      ? 'an unexpected answer: is something else at this address?'
      : 'the balancer is not serving (still booting, or its own bootstrap failed)';
  const lines = [
    `the stack did not become ready within ${inputs.timeoutSeconds}s: ${inputs.url} last answered "${last}" after ${attempts} attempt(s); ${meaning}.`,
    `A failed instance bootstrap writes the failing step to ${BOOTSTRAP_FAILED} (its output is in /var/log/cloud-init-output.log). Per instance, with Session Manager or the console log:`,
    ...inputs.instances.map(
      (i) => `  ${i.name}: aws ssm start-session --region ${i.region} --target ${i.id}   (then: sudo cat ${BOOTSTRAP_FAILED})   or: aws ec2 get-console-output --region ${i.region} --instance-id ${i.id} --latest --output text`,
    ),
    'Fix the cause and run pulumi up again: the check runs again whenever the instances or the artefact change.',
  ];
  return lines.join('\n');
}

/** The dynamic provider: create and update poll; nothing to delete (it only reads). */
export const readinessProvider: pulumi.dynamic.ResourceProvider = {
  async create(inputs: ReadinessInputs) {
    const result = await waitUntilReady(inputs);
    return { id: `ready-${inputs.revision}`, outs: { ...inputs, ...result } };
  },
  async diff(_id: string, olds: ReadinessOutputs, news: ReadinessInputs) {
    const keys: (keyof ReadinessInputs)[] = ['url', 'host', 'timeoutSeconds', 'intervalSeconds', 'requestTimeoutSeconds', 'instances', 'revision'];
    const changed = keys.filter((k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k]));
    return { changes: changed.length > 0, replaces: [] };
  },
  async update(_id: string, _olds: ReadinessOutputs, news: ReadinessInputs) {
    const result = await waitUntilReady(news);
    return { outs: { ...news, ...result } };
  },
};

type Inputs<T> = { [K in keyof T]: pulumi.Input<T[K]> };

/** The readiness check: created after `dependsOn` (the instances), polling until the stack serves. */
export class ReadinessCheck extends pulumi.dynamic.Resource {
  declare readonly attempts: pulumi.Output<number>;
  declare readonly seconds: pulumi.Output<number>;

  constructor(name: string, args: Inputs<ReadinessInputs>, opts?: pulumi.CustomResourceOptions) {
    super(readinessProvider, name, { ...args, attempts: undefined, seconds: undefined }, opts, 'cdn', 'ReadinessCheck');
  }
}
