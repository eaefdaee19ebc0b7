/**
 * The committed examples are what the renderers produce today: a renderer change
 * shows up in the diff of examples/rendered/ (`npm run examples:render`), or fails here.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { filesUnder, RENDERED_DIR, renderExamples, writeExamples } from './render';

describe('rendered examples', () => {
  const rendered = renderExamples();

  test('every committed file is what the renderers produce now', () => {
    for (const f of rendered) expect({ path: f.path, content: fs.readFileSync(path.join(RENDERED_DIR, f.path), 'utf8') }).toEqual({ path: f.path, content: f.content });
  });

  test('no committed file is left over from a renderer that no longer writes it', () => {
    expect(filesUnder(RENDERED_DIR)).toEqual(rendered.map((f) => f.path));
  });

  test('the default spec shows every service the docker target gives rendered files or an environment', () => {
    const units = new Set(rendered.filter((f) => f.path.startsWith('default/')).map((f) => f.path.split('/')[1]));
    expect([...units].sort()).toEqual(['alloy', 'balancer', 'edge-eu-1', 'grafana', 'object-store', 'origin', 'prometheus', 'redis']);
    expect(rendered.map((f) => f.path)).toEqual(expect.arrayContaining(['default/edge-eu-1/conf/nginx.conf', 'default/balancer/conf/nginx.conf', 'default/prometheus/prometheus.yml', 'default/redis/redis.conf']));
  });

  test('writing them again removes stale files and writes the same bytes', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-examples-'));
    try {
      fs.mkdirSync(path.join(tmp, 'default'));
      fs.writeFileSync(path.join(tmp, 'default', 'stale.conf'), 'old');
      writeExamples(tmp);
      expect(filesUnder(tmp)).toEqual(rendered.map((f) => f.path));
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
