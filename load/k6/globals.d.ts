// k6 provides console; @types/k6 does not declare it. Declared the way @types/node does
// (an interface and a var of that type), so the repository's own tsconfig, which sees
// both Node's and these declarations, accepts it too.
interface Console {
  log(...data: unknown[]): void;
  info(...data: unknown[]): void;
  warn(...data: unknown[]): void;
  error(...data: unknown[]): void;
  debug(...data: unknown[]): void;
}
declare var console: Console;
