/**
 * A secret read from the environment or a file (a health check's AUTH password): it prints as
 * `[secret]` in logs, JSON (`/status`, `tcprouter check --json`) and `inspect`; only `reveal()`
 * gives the value, for the bytes sent on the wire.
 */
export class Secret {
  readonly #value: string;

  /** `source` says where it came from, for messages: `env REDIS_PASSWORD`, `file /etc/x`. */
  constructor(
    value: string,
    readonly source: string,
  ) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return "[secret]";
  }

  toJSON(): string {
    return "[secret]";
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `[secret from ${this.source}]`;
  }

  /** Same value (a reload keeps a checker whose secret did not change). */
  equals(other: Secret): boolean {
    return this.#value === other.#value;
  }
}
