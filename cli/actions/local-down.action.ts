/** `cdn local down`: stop a detached stack. */
import { down } from '../../infra/targets/native/stack';

export class LocalDownAction {
  async handle(flags: { stateDir: string }): Promise<void> {
    const state = await down(flags.stateDir);
    process.stdout.write(`Stopped ${state.services.length} services in ${state.stateDir}.\n`);
  }
}
