/**
 * The observability files on the Pulumi targets, under Pulumi mocks (no Docker engine
 * or AWS account here): Prometheus gets its rule files beside prometheus.yml, Grafana
 * the dashboards provider and every dashboard of the repository, and the containers
 * the labels the Alloy pipeline turns into Loki labels.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GRAFANA_DASHBOARDS_DIR, GRAFANA_PROVISIONING, renderGrafanaDashboardsProvider } from '../../observability/grafana';
import { renderRules } from '../../observability/rules';
import { program } from '../../stacks/program';
import { USER_DATA_LIMIT, unpackUserData } from '../../infra/targets/aws/cloud-init';
import { artefactEntries } from '../../infra/targets/aws/artefact';
import { plain, runProgram, type RecordedResource } from '../support/pulumi-mocks';
import { REPO_ROOT } from '../support/nginx-lua';

const CONTAINER = 'docker:index/container:Container';
const uploads = (c: RecordedResource) => plain<{ file: string; content: string }[]>(c.inputs.uploads) ?? [];
const dashboards = fs.readdirSync(path.join(REPO_ROOT, 'observability', 'dashboards')).filter((f) => f.endsWith('.json'));

describe('observability on the Pulumi targets', () => {
  test('docker: rule files for Prometheus, provisioning and dashboards for Grafana, role and unit labels on every CDN container', async () => {
    const run = await runProgram({ 'cdn:target': 'docker', 'cdn:spec': { name: 'shop', regions: [{ name: 'eu', edges: 2 }] } }, program);
    const prometheus = uploads(run.named('prometheus', CONTAINER));
    for (const r of renderRules()) expect(prometheus.find((u) => u.file === `/etc/cdn/prometheus/${r.path}`)?.content).toBe(r.content);
    expect(prometheus.find((u) => u.file === '/etc/cdn/prometheus/prometheus.yml')?.content).toContain('rule_files:\n  - "rules/*.yml"');

    const grafana = uploads(run.named('grafana', CONTAINER));
    expect(grafana.find((u) => u.file === GRAFANA_PROVISIONING.dashboards)?.content).toBe(renderGrafanaDashboardsProvider());
    expect(dashboards.length).toBe(4);
    for (const d of dashboards) {
      expect(grafana.find((u) => u.file === `${GRAFANA_DASHBOARDS_DIR}/${d}`)?.content).toBe(fs.readFileSync(path.join(REPO_ROOT, 'observability', 'dashboards', d), 'utf8'));
    }
    for (const name of ['origin', 'edge-eu-1', 'edge-eu-2', 'balancer', 'redis', 'prometheus']) {
      const labels = plain<{ label: string; value: string }[]>(run.named(name, CONTAINER).inputs.labels);
      expect(labels.find((l) => l.label === 'cdn.unit')?.value).toBe(name);
      expect(labels.find((l) => l.label === 'cdn.role')?.value).toBe(name.replace(/-.*/, ''));
    }
  });

  test('aws: the monitoring instance writes the rule files and the provider, mounts the artefact\'s dashboards, and its user data fits', async () => {
    const run = await runProgram(
      {
        'cdn:target': 'aws',
        'cdn:spec': { name: 'shop', regions: [{ name: 'eu-west-1', edges: 2 }, { name: 'us-east-1', edges: 3 }], defaultRegion: 'eu-west-1' },
        'cdn:aws': { amis: { 'eu-west-1': 'ami-0123456789abcdef0', 'us-east-1': 'ami-0fedcba9876543210' } },
      },
      program,
    );
    const raw = unpackUserData(plain<string>(run.named('monitoring', 'aws:ec2/instance:Instance').inputs.userDataBase64));
    const parsed = JSON.parse(raw.slice('#cloud-config\n'.length)) as { write_files: { path: string; content: string }[] };
    const files = Object.fromEntries(parsed.write_files.map((f) => [f.path, f.content]));
    for (const r of renderRules()) expect(files[`/etc/cdn/prometheus/${r.path}`]).toBe(r.content);
    // kept under the unit's directory, mounted where Grafana reads it
    expect(files['/etc/cdn/grafana/files/etc/grafana/provisioning/dashboards/cdn.yaml']).toBe(renderGrafanaDashboardsProvider());
    const bootstrap = Object.entries(files).find(([p]) => p.endsWith('bootstrap.sh'))![1];
    expect(bootstrap).toContain(`/opt/cdn/observability/dashboards:${GRAFANA_DASHBOARDS_DIR}:ro`);
    // the dashboards come with the artefact unpacked at /opt/cdn
    expect(artefactEntries(REPO_ROOT).has('observability/dashboards/cdn-overview.json')).toBe(true);
    expect(Buffer.from(plain<string>(run.named('monitoring', 'aws:ec2/instance:Instance').inputs.userDataBase64), 'base64').length).toBeLessThan(USER_DATA_LIMIT);
  });
});
