/**
 * Static checks of the Alloy configurations (no Alloy binary here, no Docker engine):
 * the syntax is balanced, every component reference points at a defined component
 * of a known type, the pipeline ends in loki.write, and only low-cardinality fields
 * become labels.
 */
import * as path from 'node:path';
import { deployPlan } from '../infra/targets/pulumi/config';
import { deployedUnits } from '../infra/targets/pulumi/units';
import { dockerAddresses, dockerTopology } from '../infra/targets/docker/topology';
import { parseSpec } from '../infra/model/spec';
import { ACCESS_LOGS, dockerLogDir, ERROR_LOGS, LOG_LABELS, lokiPushUrl, renderAlloyConfig, renderSystemdAlloyConfig } from './alloy';

/** Alloy components this configuration may use (grafana.com/docs/alloy/latest/reference/components). */
const KNOWN = ['discovery.docker', 'discovery.relabel', 'loki.source.docker', 'loki.source.journal', 'loki.source.file', 'loki.relabel', 'loki.process', 'loki.write', 'local.file_match'];

function stripStringsAndComments(text: string): string {
  return text.replace(/"(?:[^"\\\n]|\\.)*"|\/\/[^\n]*/g, (m) => (m.startsWith('"') ? '""' : ''));
}

function components(text: string): { type: string; name: string }[] {
  return [...text.matchAll(/^([a-z_]+(?:\.[a-z_]+)+)\s+"([a-z_]+)"\s*\{/gm)].map((m) => ({ type: m[1], name: m[2] }));
}

function check(text: string): string[] {
  const problems: string[] = [];
  const bare = stripStringsAndComments(text);
  let depth = 0;
  for (const ch of bare) {
    if (ch === '{') depth++;
    if (ch === '}') depth--;
    if (depth < 0) problems.push('unbalanced }');
  }
  if (depth !== 0) problems.push(`unbalanced braces (${depth})`);
  if ((text.replace(/\\"/g, '').match(/"/g) ?? []).length % 2 !== 0) problems.push('unbalanced quotes');
  const defined = components(text);
  for (const c of defined) if (!KNOWN.includes(c.type)) problems.push(`unknown component ${c.type}`);
  const ids = defined.map((c) => `${c.type}.${c.name}`);
  if (new Set(ids).size !== ids.length) problems.push('a component is defined twice');
  // references: <type>.<name>.<export>
  for (const m of bare.matchAll(/=\s*\[?\s*((?:discovery|loki|local)\.[a-z_.]+)/g)) {
    const ref = m[1];
    const owner = ids.find((id) => ref.startsWith(`${id}.`));
    if (!owner) problems.push(`reference to an undefined component: ${ref}`);
    else if (!/\.(receiver|targets|output|rules)$/.test(ref)) problems.push(`unknown export in ${ref}`);
  }
  // every component but loki.write forwards somewhere, or is used by reference
  for (const id of ids) {
    const referenced = bare.includes(`${id}.`);
    if (!id.startsWith('loki.write') && !referenced && !/forward_to\s*=\s*\[[^\]]+\]/.test(blockOf(text, id))) problems.push(`${id} leads nowhere`);
  }
  // the labels set by stage.labels / relabel target_label are the allowed ones
  for (const m of text.matchAll(/stage\.labels\s*\{\s*values\s*=\s*\{([^}]*)\}/g)) {
    for (const l of [...m[1].matchAll(/([a-z_]+)\s*=/g)].map((x) => x[1])) if (!(LOG_LABELS as readonly string[]).includes(l)) problems.push(`label ${l} is not a low-cardinality label`);
  }
  for (const m of text.matchAll(/target_label\s*=\s*"([^"]+)"/g)) if (!(LOG_LABELS as readonly string[]).includes(m[1])) problems.push(`label ${m[1]} is not a low-cardinality label`);
  return problems;
}

function blockOf(text: string, id: string): string {
  const [type, name] = [id.slice(0, id.lastIndexOf('.')), id.slice(id.lastIndexOf('.') + 1)];
  const start = text.indexOf(`${type} "${name}" {`);
  let depth = 0;
  for (let i = text.indexOf('{', start); i < text.length; i++) {
    if (text[i] === '{') depth++;
    if (text[i] === '}' && --depth === 0) return text.slice(start, i + 1);
  }
  return '';
}

/** Both variants, the docker one with Loki by name. */
const CONFIGS: [string, string][] = [
  ['docker', renderAlloyConfig({ source: 'docker', lokiPushUrl: lokiPushUrl('http://loki:3100') })],
  ['systemd', renderSystemdAlloyConfig()],
];

describe('Alloy configuration (static checks only: no Alloy binary here)', () => {
  test.each(CONFIGS)('%s is well-formed and wired end to end', (_file, content) => {
    expect(check(content)).toEqual([]);
    expect(content).toMatch(/loki\.write "loki" \{\s*endpoint \{\s*url = /);
    expect(content).toContain('stage.json');
    expect(content).toContain('forward_to = [loki.write.loki.receiver]');
  });

  test('docker: the socket, container labels, and the access logs; systemd: the cdn-* units\' journal', () => {
    const [docker, systemd] = CONFIGS.map(([, content]) => content);
    expect(docker).toContain('host = "unix:///var/run/docker.sock"');
    expect(docker).toContain('__meta_docker_container_label_cdn_role');
    expect(docker).toContain(`"__path__" = "${ACCESS_LOGS.docker}"`);
    expect(docker).toContain('url = "http://loki:3100/loki/api/v1/push"');
    expect(systemd).toContain('matches       = "_SYSTEMD_UNIT=cdn-*.service"');
    expect(systemd).toContain('url = sys.env("CDN_LOKI_PUSH_URL")');
    expect(systemd).toContain(`"__path__" = "${ACCESS_LOGS.systemd}"`);
  });

  test('the access-log globs and the rendered unit/role extraction fit where each nginx unit writes, on both targets', () => {
    const spec = { name: 'shop', regions: [{ name: 'eu', edges: 2 }, { name: 'us', edges: 1 }] };
    const plan = deployPlan(spec, parseSpec(spec), 'docker');
    const units = deployedUnits(plan, dockerTopology(plan.spec, dockerAddresses(plan.spec, '10.89.0.0/24'), 'http://127.0.0.1:8080', { objectStore: true }), { kind: 'docker', network: 'shop-net' });
    const nginx = units.filter((u) => u.role === 'edge' || u.role === 'balancer');
    expect(nginx.map((u) => u.name)).toEqual(['edge-eu-1', 'edge-eu-2', 'edge-us-1', 'balancer']);
    const globRe = (glob: string) => new RegExp(`^${glob.replace(/\./g, '\\.').replace('*', '[^/]+')}$`);
    for (const [source, config] of [['systemd', renderSystemdAlloyConfig()], ['docker', renderAlloyConfig({ source: 'docker', lokiPushUrl: 'http://x:3100/loki/api/v1/push' })]] as const) {
      // the regexes of the access_logs stage, from the rendered text (RE2 named groups as JS ones)
      const expressions = [...blockOf(config, 'loki.process.access_logs').matchAll(/expression = "((?:[^"\\]|\\.)*)"/g)].map((m) => new RegExp(JSON.parse(`"${m[1]}"`).replace(/\(\?P</g, '(?<')));
      expect(expressions).toHaveLength(2);
      for (const u of nginx) {
        // where nginx writes: its access_log directive, relative to its -p prefix
        const conf = u.files.find((f) => f.path === 'conf/nginx.conf')!.content;
        const written = path.posix.join(u.command[u.command.indexOf('-p') + 1], /access_log (\S+) cdn_json/.exec(conf)![1]);
        // what Alloy sees: the same file on the host (systemd), or its volume's mount (docker)
        const seen = source === 'systemd' ? written : path.posix.join(dockerLogDir(u.name), path.posix.basename(written));
        expect(seen).toMatch(globRe(ACCESS_LOGS[source]));
        expect(config).toContain(`"__path__" = "${ACCESS_LOGS[source]}"`);
        const unit = expressions[0].exec(seen)?.groups?.unit;
        expect(unit).toBe(u.name);
        expect(expressions[1].exec(unit!)?.groups?.role).toBe(u.role);
      }
      expect(ACCESS_LOGS.systemd).toBe('/etc/cdn/*/logs/access.log');
    }
  });

  test('the error-log globs and the unit, role and level extraction fit where each nginx unit writes its error log', () => {
    const spec = { name: 'shop', regions: [{ name: 'eu', edges: 1 }] };
    const plan = deployPlan(spec, parseSpec(spec), 'docker');
    const units = deployedUnits(plan, dockerTopology(plan.spec, dockerAddresses(plan.spec, '10.89.0.0/24'), 'http://127.0.0.1:8080', { objectStore: true }), { kind: 'docker', network: 'shop-net' });
    const nginx = units.filter((u) => u.role === 'edge' || u.role === 'balancer');
    expect(nginx).toHaveLength(2);
    const globRe = (glob: string) => new RegExp(`^${glob.replace(/\./g, '\\.').replace('*', '[^/]+')}$`);
    for (const [source, config] of [['systemd', renderSystemdAlloyConfig()], ['docker', renderAlloyConfig({ source: 'docker', lokiPushUrl: 'http://x:3100/loki/api/v1/push' })]] as const) {
      const block = blockOf(config, 'loki.process.error_logs');
      const expressions = [...block.matchAll(/expression = "((?:[^"\\]|\\.)*)"/g)].map((m) => new RegExp(JSON.parse(`"${m[1]}"`).replace(/\(\?P</g, '(?<')));
      expect(expressions).toHaveLength(3);
      expect(config).toContain(`"__path__" = "${ERROR_LOGS[source]}"`);
      for (const u of nginx) {
        // where nginx writes: the -e of its command line
        const written = u.command[u.command.indexOf('-e') + 1];
        const seen = source === 'systemd' ? written : path.posix.join(dockerLogDir(u.name), path.posix.basename(written));
        expect(seen).toMatch(globRe(ERROR_LOGS[source]));
        const unit = expressions[0].exec(seen)?.groups?.unit;
        expect(unit).toBe(u.name);
        expect(expressions[1].exec(unit!)?.groups?.role).toBe(u.role);
      }
      // a line as nginx writes it
      const line = '2026/11/25 22:13:36 [alert] 18182#18182: *7 setrlimit(RLIMIT_NOFILE, 16384) failed';
      expect(expressions[2].exec(line)?.groups).toEqual({ time: '2026/11/25 22:13:36', level: 'alert' });
      // plain text: straight to Loki, not through the JSON stage
      expect(block).toContain('forward_to = [loki.write.loki.receiver]');
    }
  });

  test('the checker catches a dangling reference, an unknown component and a high-cardinality label', () => {
    const good = renderAlloyConfig({ source: 'docker', lokiPushUrl: 'http://loki:3100/loki/api/v1/push' });
    expect(check(good.replace('forward_to = [loki.write.loki.receiver]', 'forward_to = [loki.write.nowhere.receiver]'))).toContain('reference to an undefined component: loki.write.nowhere.receiver');
    expect(check(good.replace('loki.write "loki"', 'loki.wrote "loki"')).join()).toContain('unknown component loki.wrote');
    expect(check(good.replace('values = { level = "", cache = "" }', 'values = { level = "", req_id = "" }'))).toContain('label req_id is not a low-cardinality label');
    expect(check(good + '}\n')).toContain('unbalanced }');
  });
});
