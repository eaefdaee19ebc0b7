/** Tests take free ports the same way the native target does. */
export { freePort } from '../../infra/targets/native/ports';
