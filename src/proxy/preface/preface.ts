/**
 * The preface: what a listener reads from a client before it routes, as an ordered list of
 * steps (today a PROXY protocol header, then a TLS ClientHello). Each step reads what it needs
 * and passes the bytes after it on to the next; the last step's rest goes to the upstream
 * queue. The whole preface is bounded by one timer (`hello_timeout`).
 *
 * A new preface step (a QUIC Initial, a protocol sniffer) is a new file in this folder
 * implementing `PrefaceStep`, and one line where the listener builds its list (listener.ts).
 */
import type { CloseReason } from "../handle.ts";
import type { RouteInfo } from "../route.ts";

/** What a preface step may do to its session. */
export interface PrefaceContext {
  /** What the steps learned so far, read by the route. */
  readonly info: RouteInfo;
  /** Bytes to forward to the upstream, in order, once it is dialled. */
  keep(bytes: Uint8Array): void;
  /** The client's real address (a PROXY header's), and the address it dialled (null: the listener's). */
  setClientAddress(host: string, port: number, destination: { host: string; port: number } | null): void;
  /** The source checks, with the address known now; false when the client was turned away (and closed). */
  admit(): boolean;
  /** The client is turned away: one warn line (rate-limited), closed. */
  fail(reason: CloseReason, detail: string): void;
  /** Every step is done: on to the route. */
  route(): void;
}

/**
 * `more`: every byte was taken, more are needed. `failed`: the step called `context.fail`.
 * A Uint8Array: the step is done, and these bytes (maybe none) go on to the next step.
 */
export type StepResult = "more" | "failed" | Uint8Array;

export interface PrefaceStep {
  /** What the step waits for, for the timeout's message ("PROXY header"). */
  readonly awaiting: string;
  feed(chunk: Uint8Array, context: PrefaceContext): StepResult;
}

/** Runs a session's steps in order over the chunks the client sends. */
export class Preface {
  private index = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly steps: readonly PrefaceStep[],
    private readonly context: PrefaceContext,
    timeout: number,
  ) {
    if (timeout > 0) this.timer = setTimeout(timedOut, timeout, this, timeout);
  }

  /** Bytes from the client while the preface is read. */
  feed(chunk: Uint8Array): void {
    while (this.index < this.steps.length) {
      const result = this.steps[this.index]!.feed(chunk, this.context);
      if (result === "more") return;
      if (result === "failed") return this.stop();
      this.index++;
      chunk = result;
      if (chunk.length === 0 && this.index < this.steps.length) return;
    }
    this.stop();
    if (chunk.length > 0) this.context.keep(chunk);
    this.context.route();
  }

  /** Stops the timer (the preface is done, or the session closed). */
  stop(): void {
    clearTimeout(this.timer);
  }

  expired(timeout: number): void {
    const step = this.steps[this.index];
    if (step !== undefined) this.context.fail("hello_timeout", `no complete ${step.awaiting} within ${timeout} ms`);
  }
}

function timedOut(preface: Preface, timeout: number): void {
  preface.expired(timeout);
}
