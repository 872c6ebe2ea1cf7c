// What `npm test` and `npm run demo` need from outside npm, checked before they start: when something
// is missing, print what and the exact command that installs it, and exit 1 (instead of failing later
// with a confusing ENOENT deep inside a test).

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export type Purpose = 'test' | 'demo';

interface Requirement {
  what: string;
  /** Debian package that provides it. */
  pkg: string;
  present: () => boolean;
  for: readonly Purpose[];
}

const runs = (cmd: string, args: string[]): boolean => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;

const REQUIREMENTS: readonly Requirement[] = [
  { what: 'redis-server', pkg: 'redis-server', present: () => runs('redis-server', ['--version']), for: ['test', 'demo'] },
  { what: 'redis-cli', pkg: 'redis-tools', present: () => runs('redis-cli', ['--version']), for: ['test'] },
  { what: 'Python Celery for /usr/bin/python3', pkg: 'python3-celery', present: () => runs('/usr/bin/python3', ['-c', 'import celery']), for: ['test'] },
  { what: 'the Redis client for /usr/bin/python3', pkg: 'python3-redis', present: () => runs('/usr/bin/python3', ['-c', 'import redis']), for: ['test'] },
  { what: 'PyYAML for /usr/bin/python3', pkg: 'python3-yaml', present: () => runs('/usr/bin/python3', ['-c', 'import yaml']), for: ['test'] },
  { what: 'prometheus', pkg: 'prometheus', present: () => runs('prometheus', ['--version']), for: ['test'] },
  { what: 'promtool', pkg: 'prometheus', present: () => runs('promtool', ['--version']), for: ['test'] },
];

export function checkPrerequisites(purpose: Purpose): { missing: string[]; install: string | null } {
  const missing = REQUIREMENTS.filter((r) => r.for.includes(purpose) && !r.present());
  if (missing.length === 0) return { missing: [], install: null };
  const packages = [...new Set(missing.map((r) => r.pkg))].join(' ');
  return { missing: missing.map((r) => r.what), install: `sudo apt-get update && sudo apt-get install -y ${packages}` };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const purpose = process.argv[2];
  if (purpose !== 'test' && purpose !== 'demo') {
    process.stderr.write('usage: node dist/src/prereqs.js test|demo\n');
    process.exit(2);
  }
  const { missing, install } = checkPrerequisites(purpose);
  if (install) {
    for (const m of missing) process.stderr.write(`missing: ${m}\n`);
    process.stderr.write(`install with: ${install}\n`);
    process.exit(1);
  }
}
