/** `cdn local status`: what runs in a state directory, as text or JSON. */
import { status } from '../../infra/targets/native/stack';

export class LocalStatusAction {
  handle(flags: { stateDir: string; json?: boolean }): void {
    const state = status(flags.stateDir);
    if (flags.json) {
      process.stdout.write(JSON.stringify(state, null, 2) + '\n');
      return;
    }
    for (const s of state.services) {
      process.stdout.write(`${s.name.padEnd(12)} ${s.running ? 'running' : 'STOPPED'}  pid ${String(s.pid).padEnd(7)} ${s.url ?? ''}\n`);
    }
  }
}
