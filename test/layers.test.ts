/**
 * The layer rules (.dependency-cruiser.cjs) bite: a tree that breaks them fails the
 * check, naming each rule. `npm run lint` (before every `npm test`) runs the same
 * check on this repository.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from './support/nginx-lua';

const DEPCRUISE = path.join(REPO_ROOT, 'node_modules', '.bin', 'depcruise');
const CONFIG = path.join(REPO_ROOT, '.dependency-cruiser.cjs');

function cruise(cwd: string, dirs: string[]): { status: number | null; out: string } {
  const r = spawnSync(DEPCRUISE, ['--config', CONFIG, ...dirs], { cwd, encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

describe('layer rules', () => {
  test('a cycle, an upward import and deployment code in the origin each fail the check', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-layers-'));
    try {
      const files: Record<string, string> = {
        'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', strict: true } }),
        'infra/model/spec.ts': "import { units } from '../units/units';\nexport const spec = units;\n",
        'infra/units/units.ts': "import { renderEdge } from '../../edge/render';\nexport const units = [renderEdge];\n",
        'edge/render.ts': "import { units } from '../infra/units/units';\nexport function renderEdge() { return units; }\n",
        'origin/contract/environment.ts': "import * as fs from 'node:fs';\nexport const read = fs.readFileSync;\n",
        'origin/src/main.ts': "import { up } from '../../infra/targets/native/stack';\nexport const main = up;\n",
        'infra/targets/native/stack.ts': "import { units } from '../../units/units';\nexport const up = units;\n",
      };
      for (const [f, content] of Object.entries(files)) {
        fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
        fs.writeFileSync(path.join(dir, f), content);
      }
      const { status, out } = cruise(dir, ['infra', 'edge', 'origin']);
      expect(status).not.toBe(0);
      expect(out).toContain('error no-circular: ');
      expect(out).toContain('error model-stands-alone: infra/model/spec.ts → infra/units/units.ts');
      expect(out).toContain('error renderers-import-model-and-contract: edge/render.ts → infra/units/units.ts');
      expect(out).toContain('error contract-has-no-dependencies: origin/contract/environment.ts → fs');
      expect(out).toContain('error origin-imports-contract-and-errors: origin/src/main.ts → infra/targets/native/stack.ts');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
