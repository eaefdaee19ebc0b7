import { inspect } from 'node:util';

/**
 * Wraps a secret so that it cannot leak through logging: `String()`, `JSON.stringify()`
 * and `util.inspect()` all print "[redacted]". Only `reveal()` returns the value.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return '[redacted]';
  }

  toJSON(): string {
    return '[redacted]';
  }

  [inspect.custom](): string {
    return 'Secret([redacted])';
  }
}
