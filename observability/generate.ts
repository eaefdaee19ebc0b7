/**
 * Writes the files Grafana reads from the repository: the dashboards
 * (observability/dashboards/*.json). `npm run observability:render`; tests fail when
 * the files and the renderer disagree. (What the other renderers produce is shown
 * under examples/rendered/.)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { renderDashboards } from './dashboards';

/** The repository's observability/ directory, from the sources (ts-jest) or from dist/. */
export const OBSERVABILITY_DIR = (() => {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return path.join(dir, 'observability');
})();

export function writeObservabilityFiles(root = OBSERVABILITY_DIR): string[] {
  fs.mkdirSync(path.join(root, 'dashboards'), { recursive: true });
  return renderDashboards().map((f) => {
    fs.writeFileSync(path.join(root, 'dashboards', f.file), f.content);
    return path.join('dashboards', f.file);
  });
}

if (require.main === module) {
  process.stdout.write(`wrote ${writeObservabilityFiles().join(', ')}\n`);
}
