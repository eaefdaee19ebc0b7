/**
 * Prometheus scrape configuration derived from the topology: every origin, edge and
 * balancer that exists gets a target, with its role and region as labels. Adding an
 * edge to the spec adds its target; nothing is listed by hand.
 */
import { hostPort, type Topology } from '../infra/model/topology';
import type { RenderedFile } from '../infra/model/rendered-file';
import { renderRules } from './rules';

/** Where prometheus.yml looks for rule files, relative to its own directory. */
export const RULE_FILES_GLOB = 'rules/*.yml';

export interface ScrapeTarget {
  job: 'origin' | 'edge' | 'balancer' | 'redis';
  address: string;
  labels: Record<string, string>;
}

export function scrapeTargets(topology: Topology): ScrapeTarget[] {
  return [
    // metrics are on the origin's API listener (the delivery one serves assets only)
    { job: 'origin', address: hostPort(topology.originApi.reach), labels: {} },
    ...topology.edges.map((e) => ({
      job: 'edge' as const,
      address: hostPort(e.internal.reach),
      labels: { edge: e.id, region: e.region },
    })),
    { job: 'balancer', address: hostPort(topology.balancer.internal.reach), labels: {} },
  ];
}

function yamlString(s: string): string {
  return JSON.stringify(s);
}

export interface PrometheusConfigOptions {
  scrapeInterval?: string;
  /** Rule evaluation interval (default: the scrape interval). */
  evaluationInterval?: string;
  /** Rule files or globs, relative to prometheus.yml (default: `rules/*.yml`, which may match nothing; `[]` for none). */
  ruleFiles?: string[];
}

export function renderPrometheusConfig(targets: ScrapeTarget[], options: PrometheusConfigOptions = {}): string {
  const jobs = [...new Set(targets.map((t) => t.job))];
  const ruleFiles = options.ruleFiles ?? [RULE_FILES_GLOB];
  const lines = [
    '# Rendered from the CDN topology: do not edit, change the spec instead.',
    'global:',
    `  scrape_interval: ${options.scrapeInterval ?? '5s'}`,
    `  evaluation_interval: ${options.evaluationInterval ?? options.scrapeInterval ?? '5s'}`,
    ...(ruleFiles.length > 0 ? ['rule_files:', ...ruleFiles.map((f) => `  - ${yamlString(f)}`)] : []),
    'scrape_configs:',
  ];
  for (const job of jobs) {
    lines.push(`  - job_name: ${yamlString(job)}`, '    metrics_path: /metrics', '    static_configs:');
    for (const t of targets.filter((x) => x.job === job)) {
      lines.push(`      - targets: [${yamlString(t.address)}]`);
      const labels = Object.entries(t.labels);
      if (labels.length > 0) {
        lines.push('        labels:');
        for (const [k, v] of labels) lines.push(`          ${k}: ${yamlString(v)}`);
      }
    }
  }
  return lines.join('\n') + '\n';
}

/** prometheus.yml and the rule files it loads (observability/rules.ts), side by side in the unit's directory. */
export function renderPrometheus(topology: Topology, options: PrometheusConfigOptions = {}): RenderedFile[] {
  return [{ path: 'prometheus.yml', content: renderPrometheusConfig(scrapeTargets(topology), options) }, ...renderRules()];
}
