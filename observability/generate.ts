/**
 * Writes the files Grafana and Alloy read from the repository: the dashboards
 * (observability/dashboards/*.json) and the Alloy configurations
 * (observability/alloy/*.alloy). `npm run observability:render`; tests fail when the
 * files and the renderers disagree.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { renderAlloyFiles } from './alloy';
import { renderDashboards } from './dashboards';

/** The repository's observability/ directory, from the sources (ts-jest) or from dist/. */
export const OBSERVABILITY_DIR = (() => {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return path.join(dir, 'observability');
})();

export function writeObservabilityFiles(root = OBSERVABILITY_DIR): string[] {
  const written: string[] = [];
  for (const [sub, files] of [['dashboards', renderDashboards()], ['alloy', renderAlloyFiles()]] as const) {
    fs.mkdirSync(path.join(root, sub), { recursive: true });
    for (const f of files) {
      fs.writeFileSync(path.join(root, sub, f.file), f.content);
      written.push(path.join(sub, f.file));
    }
  }
  return written;
}

if (require.main === module) {
  process.stdout.write(`wrote ${writeObservabilityFiles().join(', ')}\n`);
}
