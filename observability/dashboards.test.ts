/**
 * Static checks of the Grafana side: the dashboard JSON files are what the renderer
 * produces, reference the data sources by their fixed uids, lay out on Grafana's
 * 24-column grid, and every LogQL selector uses a label the Alloy pipeline sets.
 * (The PromQL of every panel runs against a real Prometheus in
 * test/e2e/observability.test.ts.) Grafana itself does not run here.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse } from 'yaml';
import { LOG_LABELS } from './alloy';
import { DASHBOARDS, LOGQL, promqlOf, renderDashboards, type Dashboard } from './dashboards';
import { OBSERVABILITY_DIR, writeObservabilityFiles } from './generate';
import { DATASOURCE_UIDS, GRAFANA_DASHBOARDS_DIR, renderGrafanaDashboardsProvider, renderGrafanaDatasources } from './grafana';

const files = fs.readdirSync(path.join(OBSERVABILITY_DIR, 'dashboards')).filter((f) => f.endsWith('.json'));
const onDisk = (f: string) => JSON.parse(fs.readFileSync(path.join(OBSERVABILITY_DIR, 'dashboards', f), 'utf8')) as Dashboard;

describe('Grafana dashboards', () => {
  test('the JSON files are exactly what the renderer produces (run npm run observability:render)', () => {
    expect(files.sort()).toEqual(Object.keys(DASHBOARDS).sort());
    for (const d of renderDashboards()) expect(fs.readFileSync(path.join(OBSERVABILITY_DIR, 'dashboards', d.file), 'utf8')).toBe(d.content);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-obs-render-'));
    try {
      expect(writeObservabilityFiles(tmp).length).toBe(files.length);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('the four dashboards exist with unique uids, each with a logs panel on Loki', () => {
    const ds = files.map(onDisk);
    expect(ds.map((d) => d.uid).sort()).toEqual(['cdn-edge', 'cdn-origin', 'cdn-overview', 'cdn-purges']);
    for (const d of ds) {
      const logs = d.panels.filter((p) => p.type === 'logs');
      expect(logs.length).toBeGreaterThan(0);
      for (const p of logs) expect(p.datasource).toEqual({ type: 'loki', uid: DATASOURCE_UIDS.loki });
    }
  });

  test('every panel has a unique id, a fixed data source uid, a target and a place on the 24-column grid, without overlaps', () => {
    for (const f of files) {
      const d = onDisk(f);
      const ids = d.panels.map((p) => p.id);
      expect(new Set(ids).size).toBe(ids.length);
      const cells = new Set<string>();
      for (const p of d.panels) {
        expect(Object.values(DATASOURCE_UIDS)).toContain(p.datasource.uid);
        for (const t of p.targets) expect(t.datasource?.uid ?? p.datasource.uid).toBe(p.datasource.uid);
        expect(p.targets.length).toBeGreaterThan(0);
        const { x, y, w, h } = p.gridPos;
        expect(x + w).toBeLessThanOrEqual(24);
        for (let i = x; i < x + w; i++)
          for (let j = y; j < y + h; j++) {
            const c = `${i},${j}`;
            if (cells.has(c)) throw new Error(`${f}: panel "${p.title}" overlaps another at ${c}`);
            cells.add(c);
          }
      }
    }
  });

  test('the overview answers the operator\'s questions: traffic, hit ratio, latency, errors, offload, per region', () => {
    const titles = onDisk('cdn-overview.json').panels.map((p) => p.title.toLowerCase()).join(' | ');
    for (const word of ['requests/s', 'hit ratio', 'latency', 'errors', 'offload', 'by region', 'logs']) expect(titles).toContain(word);
    expect(promqlOf(onDisk('cdn-overview.json')).length).toBeGreaterThan(10);
  });

  test('LogQL selectors only use labels the Alloy pipeline sets', () => {
    const logql = files.flatMap((f) => onDisk(f).panels.filter((p) => p.type === 'logs').flatMap((p) => p.targets.map((t) => t.expr)));
    expect(logql.length).toBeGreaterThanOrEqual(4);
    for (const expr of [...logql, ...Object.values(LOGQL)]) {
      const selector = /\{([^}]*)\}/.exec(expr)?.[1];
      expect(selector).toBeDefined();
      const labels = [...selector!.matchAll(/([a-z_]+)\s*(=~|!~|!=|=)/g)].map((m) => m[1]);
      expect(labels.length).toBeGreaterThan(0);
      for (const l of labels) expect(LOG_LABELS as readonly string[]).toContain(l);
    }
  });

  test('provisioning: data sources with fixed uids and a file provider pointing at the dashboards directory', () => {
    const ds = parse(renderGrafanaDatasources({ prometheusUrl: 'http://prometheus:9090', lokiUrl: 'http://loki:3100' }));
    expect(ds.datasources.map((d: { uid: string }) => d.uid).sort()).toEqual(Object.values(DATASOURCE_UIDS).sort());
    const p = parse(renderGrafanaDashboardsProvider());
    expect(p.apiVersion).toBe(1);
    expect(p.providers).toEqual([
      expect.objectContaining({ name: 'cdn', type: 'file', folder: 'CDN', disableDeletion: true, allowUiUpdates: false, options: expect.objectContaining({ path: GRAFANA_DASHBOARDS_DIR }) }),
    ]);
  });
});
