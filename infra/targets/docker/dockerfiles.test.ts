/**
 * The images install what CI installs: every Dockerfile runs scripts/setup.sh for
 * its role, and setup.sh's per-role lists are the units' PACKAGES, so CI's runs of
 * setup.sh exercise the images' install step too.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PACKAGES, type OwnRole } from '../../units/units';
import { imageBuilds } from './stack';
import { DEFAULT_IMAGES } from '../pulumi/images';
import { containerLayout } from '../../model/layout';

const ROOT = path.resolve(__dirname, '../../..');
const read = (f: string) => fs.readFileSync(path.join(ROOT, f), 'utf8');

describe('Dockerfiles', () => {
  const builds = imageBuilds(DEFAULT_IMAGES);

  test.each(Object.entries(builds))('the %s image installs its packages with scripts/setup.sh', (role, build) => {
    const dockerfile = read(build.dockerfile);
    expect(dockerfile).toMatch(/^FROM \$\{(BASE_IMAGE|NODE_IMAGE)\}/m);
    // The role comes from a build arg for the shared Dockerfile, literally for the others.
    const roleWord = build.args.ROLE ? '"\\$\\{ROLE\\}"' : role;
    expect(dockerfile).toMatch(new RegExp(`scripts/setup\\.sh --system --role ${roleWord}`));
    expect(dockerfile).toMatch(/ENTRYPOINT \["\/opt\/cdn\/scripts\/run-unit\.sh"\]/);
  });

  test('the origin image builds with the full setup (npm ci + build), as CI does', () => {
    expect(read('origin/Dockerfile')).toMatch(/RUN \.\/scripts\/setup\.sh --role origin && npm prune --omit=dev/);
  });

  test('edge and balancer images carry the Lua the layout points nginx at', () => {
    const layout = containerLayout();
    const copies = (f: string) => [...read(f).matchAll(/^COPY (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]);
    // each role's own Lua and the shared modules, where the rendered lua_package_path looks
    expect(copies('edge/Dockerfile')).toEqual(expect.arrayContaining([['lua', layout.sharedLuaRoot], ['edge/lua', layout.edgeLuaRoot]]));
    expect(copies('balancer/Dockerfile')).toEqual(expect.arrayContaining([['lua', layout.sharedLuaRoot], ['balancer/lua', layout.balancerLuaRoot]]));
    // the balancer no longer needs the edge's Lua
    expect(read('balancer/Dockerfile')).not.toContain('edge/lua');
  });
});

describe('scripts/setup.sh --role', () => {
  // Asks the script itself, so the test reads the lists the way bash does.
  function rolePackages(role: string): string[] {
    const script = `eval "$(sed -n '/^role_packages()/,/^}/p' ${path.join(ROOT, 'scripts/setup.sh')})"; role_packages ${role}`;
    return execFileSync('bash', ['-c', script], { encoding: 'utf8' }).trim().split(/\s+/).filter(Boolean);
  }

  test.each(Object.keys(PACKAGES))('lists exactly the %s role\'s PACKAGES', (role) => {
    expect(rolePackages(role)).toEqual(PACKAGES[role as OwnRole]);
  });

  test('every role package is in the full list CI installs', () => {
    const full = /PACKAGES=\(([^)]*)\)/.exec(read('scripts/setup.sh'))![1].split(/\s+/).filter(Boolean);
    for (const pkgs of Object.values(PACKAGES)) for (const p of pkgs) expect(full).toContain(p);
  });

  test('an unknown role or argument stops with a message naming it', () => {
    const run = (...args: string[]) => {
      try {
        execFileSync(path.join(ROOT, 'scripts/setup.sh'), args, { encoding: 'utf8', stdio: 'pipe' });
        return 'exit 0';
      } catch (err) {
        return (err as { stderr: string }).stderr;
      }
    };
    expect(run('--system', '--role', 'cache')).toMatch(/unknown role cache/);
    expect(run('--sytem')).toMatch(/unknown argument --sytem/);
  });
});
