/**
 * The rule files as Prometheus loads them: `promtool check rules` and `check config`
 * on the rendered files, and `promtool test rules` with synthetic series proving that
 * the main alerts fire when something breaks, and stay quiet when nothing does.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse } from 'yaml';
import { renderPrometheus, renderPrometheusConfig, RULE_FILES_GLOB } from './prometheus';
import { ALERT_RULES, RECORDING_RULES, renderRules, RULE_FILES, TLS_FILE_READABLE, TLS_NOT_AFTER } from './rules';
import { nativeTopology } from '../infra/targets/native/topology';
import { parseSpec } from '../infra/model/spec';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-rules-'));
  for (const f of renderRules()) {
    fs.mkdirSync(path.dirname(path.join(dir, f.path)), { recursive: true });
    fs.writeFileSync(path.join(dir, f.path), f.content);
  }
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function promtool(args: string[]): { code: number; out: string } {
  try {
    return { code: 0, out: execFileSync('promtool', args, { cwd: dir, encoding: 'utf8', stdio: 'pipe' }) };
  } catch (err) {
    const e = err as { status: number; stdout: string; stderr: string };
    return { code: e.status, out: `${e.stdout}${e.stderr}` };
  }
}

describe('Prometheus rules', () => {
  test('promtool accepts both rule files and counts every rule', () => {
    const rec = promtool(['check', 'rules', RULE_FILES.recording]);
    expect(rec.out).toContain('SUCCESS');
    expect(rec.code).toBe(0);
    const recCount = RECORDING_RULES.reduce((n, g) => n + g.rules.length, 0);
    expect(rec.out).toContain(`SUCCESS: ${recCount} rules found`);
    const alerts = promtool(['check', 'rules', RULE_FILES.alerts]);
    expect(alerts.code).toBe(0);
    expect(alerts.out).toContain(`SUCCESS: ${ALERT_RULES.reduce((n, g) => n + g.rules.length, 0)} rules found`);
  });

  test('promtool refuses a broken rule (the check can fail)', () => {
    fs.writeFileSync(path.join(dir, 'broken.yml'), 'groups:\n  - name: x\n    rules:\n      - record: "a:b"\n        expr: "sum(rate(x[1m])"\n');
    const r = promtool(['check', 'rules', 'broken.yml']);
    expect(r.code).not.toBe(0);
  });

  test('every alert has a severity, a summary and a for; every name is unique', () => {
    const names = [...RECORDING_RULES.flatMap((g) => g.rules.map((r) => r.record)), ...ALERT_RULES.flatMap((g) => g.rules.map((r) => r.alert))];
    expect(new Set(names).size).toBe(names.length);
    for (const r of ALERT_RULES.flatMap((g) => g.rules)) {
      expect(['critical', 'warning', 'info']).toContain(r.labels.severity);
      expect(r.annotations.summary.length).toBeGreaterThan(10);
      expect(r.for).toMatch(/^\d+[smh]$/);
    }
    // the rendered YAML is the data (nothing lost in rendering)
    const doc = parse(fs.readFileSync(path.join(dir, RULE_FILES.alerts), 'utf8'));
    expect(doc.groups.flatMap((g: { rules: { alert: string }[] }) => g.rules.map((r) => r.alert))).toEqual(ALERT_RULES.flatMap((g) => g.rules.map((r) => r.alert)));
  });

  test('the native prometheus.yml loads the rule files and promtool checks them with the config', async () => {
    const topology = await nativeTopology(parseSpec({}), { withPrometheus: true });
    const files = renderPrometheus(topology);
    expect(files.map((f) => f.path).sort()).toEqual(['prometheus.yml', RULE_FILES.alerts, RULE_FILES.recording].sort());
    const cfgDir = fs.mkdtempSync(path.join(dir, 'cfg-'));
    for (const f of files) {
      fs.mkdirSync(path.dirname(path.join(cfgDir, f.path)), { recursive: true });
      fs.writeFileSync(path.join(cfgDir, f.path), f.content);
    }
    const r = promtool(['check', 'config', path.join(cfgDir, 'prometheus.yml')]);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`SUCCESS: ${RECORDING_RULES.reduce((n, g) => n + g.rules.length, 0)} rules found`);
    expect(r.out).toContain(`SUCCESS: ${ALERT_RULES.reduce((n, g) => n + g.rules.length, 0)} rules found`);
    // backwards compatible: the old call still renders a valid config, and [] omits rule_files
    expect(renderPrometheusConfig([])).toContain(`rule_files:\n  - "${RULE_FILES_GLOB}"`);
    expect(renderPrometheusConfig([], { ruleFiles: [] })).not.toContain('rule_files');
  });

  test('promtool test rules: the alerts fire when an edge dies, purges lag, the origin fails, the hit ratio drops or a certificate nears its end; not otherwise', () => {
    const series = (name: string, labels: Record<string, string>, values: string) => ({
      series: `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}}`,
      values,
    });
    // expected alert: its labels and its summary as rendered (descriptions here carry no template)
    const fires = (alert: string, labels: Record<string, string>, summary: string) => ({
      exp_labels: labels,
      exp_annotations: { summary, description: ALERT_RULES.flatMap((g) => g.rules).find((r) => r.alert === alert)!.annotations.description },
    });
    // the same, for descriptions that name the certificate's path
    const firesAt = (alert: string, labels: Record<string, string>, summary: string) => {
      const expected = fires(alert, labels, summary);
      return { ...expected, exp_annotations: { ...expected.exp_annotations, description: expected.exp_annotations.description.replace('{{ $labels.path }}', labels.path) } };
    };
    const eu1 = { job: 'edge', instance: '127.0.0.1:1', edge: 'eu-1', region: 'eu' };
    const eu2 = { job: 'edge', instance: '127.0.0.1:2', edge: 'eu-2', region: 'eu' };
    const certA = { job: 'balancer', instance: '10.0.0.1:9145', path: '/etc/cdn/tls/a.pem' };
    const certB = { job: 'balancer', instance: '10.0.0.1:9145', path: '/etc/cdn/tls/b.pem' };
    const tests = {
      rule_files: [RULE_FILES.recording, RULE_FILES.alerts],
      evaluation_interval: '15s',
      tests: [
        {
          interval: '15s',
          input_series: [
            series('up', eu1, '1x20'),
            series('up', eu2, '1 1 1 0x16'),
            series('cdn_balancer_edge_up', { job: 'balancer', edge: 'eu-2', region: 'eu' }, '1 1 1 0x16'),
            series('cdn_balancer_edge_up', { job: 'balancer', edge: 'eu-1', region: 'eu' }, '1x20'),
            series('cdn_edge_invalidation_connected', eu1, '1x20'),
            series('cdn_edge_invalidation_lag_seconds', eu1, '0x4 5x15'),
            series('cdn_edge_invalidation_connected', eu2, '1x20'),
            series('cdn_edge_invalidation_lag_seconds', eu2, '0x20'),
          ],
          alert_rule_test: [
            { eval_time: '30s', alertname: 'CdnEdgeDown', exp_alerts: [] },
            {
              eval_time: '1m30s',
              alertname: 'CdnEdgeDown',
              exp_alerts: [
                {
                  exp_labels: { ...eu2, severity: 'critical' },
                  exp_annotations: {
                    summary: 'Edge eu-2 (eu) is down',
                    description: 'Prometheus cannot scrape edge eu-2 at 127.0.0.1:2. The balancer routes its objects to the next edge of the ring, whose cache is colder: expect more origin traffic.',
                  },
                },
              ],
            },
            { eval_time: '2m', alertname: 'CdnEdgeOutOfRotation', exp_alerts: [fires('CdnEdgeOutOfRotation', { job: 'balancer', edge: 'eu-2', region: 'eu', severity: 'warning' }, 'The balancer took edge eu-2 (eu) out of rotation')] },
            { eval_time: '2m', alertname: 'CdnRegionWithoutEdges', exp_alerts: [] },
            { eval_time: '1m', alertname: 'CdnPurgeLag', exp_alerts: [] },
            { eval_time: '4m', alertname: 'CdnPurgeLag', exp_alerts: [fires('CdnPurgeLag', { ...eu1, severity: 'warning' }, 'Purges reach edge eu-1 5s late')] },
          ],
        },
        {
          // the disk under eu-1's cache fills up; eu-2's has room
          interval: '1m',
          input_series: [
            series('cdn_edge_cache_filesystem_size_bytes', eu1, '1000x20'),
            series('cdn_edge_cache_filesystem_avail_bytes', eu1, '500 300 90x18'),
            series('cdn_edge_cache_filesystem_size_bytes', eu2, '1000x20'),
            series('cdn_edge_cache_filesystem_avail_bytes', eu2, '500x20'),
          ],
          alert_rule_test: [
            { eval_time: '5m', alertname: 'CdnEdgeCacheDiskNearlyFull', exp_alerts: [] },
            {
              eval_time: '15m',
              alertname: 'CdnEdgeCacheDiskNearlyFull',
              exp_alerts: [fires('CdnEdgeCacheDiskNearlyFull', { ...eu1, severity: 'warning' }, "The disk under edge eu-1's cache has 9% left")],
            },
          ],
        },
        {
          // Two balancer certificates (time() starts at 0 here): a expires 14 days and
          // 30 minutes from now and was renewed on disk without a reload; b expires in
          // 3 days and 30 minutes, nothing newer on disk.
          interval: '5m',
          input_series: [
            series(TLS_NOT_AFTER, { ...certA, subject: '/CN=shop.example', source: 'loaded' }, `${14 * 86400 + 1800}x30`),
            series(TLS_NOT_AFTER, { ...certA, subject: '/CN=www.shop.example', source: 'file' }, `${90 * 86400}x30`),
            series(TLS_NOT_AFTER, { ...certB, subject: '/CN=b.example', source: 'loaded' }, `${3 * 86400 + 1800}x30`),
            series(TLS_NOT_AFTER, { ...certB, subject: '/CN=b.example', source: 'file' }, `${3 * 86400 + 1800}x30`),
            // b's file turns unreadable for the workers after 10 minutes
            series(TLS_FILE_READABLE, certA, '1x30'),
            series(TLS_FILE_READABLE, certB, '1 1 0x28'),
          ],
          alert_rule_test: [
            { eval_time: '5m', alertname: 'CdnTlsCertificateExpiresSoon', exp_alerts: [] },
            {
              eval_time: '50m',
              alertname: 'CdnTlsCertificateExpiresSoon',
              exp_alerts: [
                firesAt('CdnTlsCertificateExpiresSoon', { ...certA, subject: '/CN=shop.example', source: 'loaded', severity: 'warning' }, "The balancer's TLS certificate /CN=shop.example expires in 13d 23h 40m 0s"),
                firesAt('CdnTlsCertificateExpiresSoon', { ...certB, subject: '/CN=b.example', source: 'loaded', severity: 'warning' }, "The balancer's TLS certificate /CN=b.example expires in 2d 23h 40m 0s"),
              ],
            },
            { eval_time: '20m', alertname: 'CdnTlsCertificateExpiresVerySoon', exp_alerts: [] },
            {
              eval_time: '50m',
              alertname: 'CdnTlsCertificateExpiresVerySoon',
              exp_alerts: [firesAt('CdnTlsCertificateExpiresVerySoon', { ...certB, subject: '/CN=b.example', source: 'loaded', severity: 'critical' }, "The balancer's TLS certificate /CN=b.example expires in 2d 23h 40m 0s")],
            },
            { eval_time: '50m', alertname: 'CdnTlsCertificateRenewedNotLoaded', exp_alerts: [] },
            {
              eval_time: '1h30m',
              alertname: 'CdnTlsCertificateRenewedNotLoaded',
              exp_alerts: [firesAt('CdnTlsCertificateRenewedNotLoaded', { ...certA, severity: 'warning' }, 'The balancer serves an older certificate than /etc/cdn/tls/a.pem holds')],
            },
            { eval_time: '20m', alertname: 'CdnTlsCertificateFileUnreadable', exp_alerts: [] },
            {
              eval_time: '30m',
              alertname: 'CdnTlsCertificateFileUnreadable',
              exp_alerts: [firesAt('CdnTlsCertificateFileUnreadable', { ...certB, severity: 'warning' }, "The balancer's workers cannot read /etc/cdn/tls/b.pem")],
            },
          ],
        },
        {
          // Redis gone: the edge is cut off, its lag grows; the origin cannot publish
          interval: '15s',
          input_series: [
            series('cdn_edge_invalidation_connected', eu1, '1 1 0x20'),
            series('cdn_edge_invalidation_lag_seconds', eu1, '0 0 15+15x20'),
            series('cdn_origin_purge_publish_failures_total', { job: 'origin', instance: 'o' }, '0 0 0 1 2 3'),
          ],
          alert_rule_test: [
            { eval_time: '2m', alertname: 'CdnInvalidationDisconnected', exp_alerts: [fires('CdnInvalidationDisconnected', { ...eu1, severity: 'critical' }, 'Edge eu-1 does not follow the purge stream')] },
            { eval_time: '3m', alertname: 'CdnInvalidationLag', exp_alerts: [fires('CdnInvalidationLag', { ...eu1, severity: 'critical' }, 'Edge eu-1 is 2m 45s behind the purge stream')] },
            { eval_time: '3m', alertname: 'CdnPurgeLag', exp_alerts: [] },
            { eval_time: '1m', alertname: 'CdnPurgePublishFailing', exp_alerts: [fires('CdnPurgePublishFailing', { severity: 'critical' }, 'The origin cannot publish purges')] },
          ],
        },
        {
          // 100 req/s; the origin turns 10% of them into 5xx after 5 minutes
          interval: '1m',
          input_series: [
            series('cdn_origin_http_requests_total', { job: 'origin', route: '/*', method: 'GET', status_class: '2xx' }, '0+6000x20'),
            series('cdn_origin_http_requests_total', { job: 'origin', route: '/*', method: 'GET', status_class: '5xx' }, '0x5 0+600x14'),
          ],
          alert_rule_test: [
            { eval_time: '4m', alertname: 'CdnOrigin5xxRate', exp_alerts: [] },
            { eval_time: '15m', alertname: 'CdnOrigin5xxRate', exp_alerts: [fires('CdnOrigin5xxRate', { severity: 'critical' }, 'The origin answers 9.091% 5xx')] },
          ],
        },
        {
          // 90% hits for 80 minutes, then 40%: the drop alert and the low alert fire
          interval: '1m',
          input_series: [
            series('cdn_edge_requests_total', { ...eu1, cache_status: 'HIT', status_class: '2xx' }, '0+5400x80 432000+2400x40'),
            series('cdn_edge_requests_total', { ...eu1, cache_status: 'MISS', status_class: '2xx' }, '0+600x80 48000+3600x40'),
          ],
          alert_rule_test: [
            { eval_time: '75m', alertname: 'CdnHitRatioDrop', exp_alerts: [] },
            { eval_time: '100m', alertname: 'CdnHitRatioDrop', exp_alerts: [fires('CdnHitRatioDrop', { severity: 'warning' }, 'The fleet hit ratio dropped to 40%')] },
            { eval_time: '110m', alertname: 'CdnHitRatioLow', exp_alerts: [fires('CdnHitRatioLow', { severity: 'warning' }, 'The fleet hit ratio is 40%')] },
          ],
          promql_expr_test: [
            { expr: ':cdn_edge_hit_ratio:ratio_rate1m', eval_time: '30m', exp_samples: [{ labels: ':cdn_edge_hit_ratio:ratio_rate1m', value: 0.9 }] },
            { expr: 'edge_region:cdn_edge_hit_ratio:ratio_rate1m', eval_time: '100m', exp_samples: [{ labels: 'edge_region:cdn_edge_hit_ratio:ratio_rate1m{edge="eu-1",region="eu"}', value: 0.4 }] },
          ],
        },
      ],
    };
    fs.writeFileSync(path.join(dir, 'tests.yml'), JSON.stringify(tests, null, 1));
    const r = promtool(['test', 'rules', 'tests.yml']);
    if (r.code !== 0) throw new Error(r.out);
    expect(r.out).toContain('SUCCESS');
  });
});
