/**
 * What the benchmarks read from /proc about the servers they measure: a process's
 * CPU time, and a master's children (nginx workers, Varnish's cache process).
 */
import * as fs from 'node:fs';

/** CPU seconds (user + system, all threads) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/** The child processes of `parent`, in pid order; with `pattern`, those whose command line matches it. */
export function childrenOf(parent: number, pattern?: RegExp): number[] {
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        if (fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ')[1] !== String(parent)) return false;
        return !pattern || pattern.test(fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' '));
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number)
    .sort((a, b) => a - b);
}
