/**
 * A pipe is one direction of a session: it reads `from` and writes `to`, and owns the queue of
 * bytes that `to` has not taken yet.
 *
 * Bun's `write()` takes what the kernel takes and keeps nothing, so the pipe keeps the rest.
 * Once anything is queued, new bytes are appended and written only from `flush()` (called on
 * `to`'s drain), which keeps the stream in order. Above the high-water mark the reading socket
 * is paused; it is resumed when the queue is at or below the low-water mark.
 *
 * A pipe with bandwidth limits (`limiter`, rate.ts) also pauses its reading socket while a
 * token bucket is in debt. The socket is paused for either reason and resumed only when
 * neither holds: the queue is at or below the low-water mark and the buckets are out of debt.
 *
 * A FIN from `from` (`end()`) is passed on with `to.shutdown()` once the queue is empty, except
 * by the session's last pipe when `to` has sent its own FIN: the session then closes `to`, and
 * close(2) sends the FIN after the queued bytes (one system call fewer per session).
 */
import type { Socket } from "bun";
import { type Limiter, type WaitsForTokens, waitForTokens } from "./rate.ts";

/** Queued chunks smaller than this are joined into one write: each write is a syscall. */
const COALESCE_BYTES = 64 * 1024;

/** A client socket (data: the session) or an upstream one (data: its connect attempt). */
// biome-ignore lint/suspicious/noExplicitAny: Socket<T> is invariant in T; a pipe never reads socket.data.
export type AnySocket = Socket<any>;

/** The queue limits of every pipe of a router. */
export interface Limits {
  /** Bytes queued in one pipe at which its reading socket is paused. */
  highWaterMark: number;
  /** Bytes queued at or below which a paused reading socket is resumed. */
  lowWaterMark: number;
}

/** What a pipe needs of the session it belongs to. */
export interface PipeOwner {
  readonly limits: Limits;
  /** Idle sweeps since bytes last moved: every chunk read zeroes it. */
  idleTicks: number;
  /** A write to `socket` failed: the session closes. */
  writeFailed(socket: AnySocket): void;
  /** Asked by a pipe about to pass its FIN on: true when the session closes `to` right after (see Session.closesAfter). */
  closesAfter(pipe: Pipe): boolean;
  /** The pipe passed its FIN on. */
  pipeDone(): void;
}

export class Pipe implements WaitsForTokens {
  /** The socket this pipe reads; null until the upstream is connected (for the upstream → client pipe). */
  from: AnySocket | null;
  /** The socket this pipe writes; null until the upstream is connected (for the client → upstream pipe). */
  to: AnySocket | null;
  /** Bytes read from `from`, whether written yet or not. */
  bytes = 0;
  /** Bytes waiting for `to`: `queue[head..]`. */
  queued = 0;
  /** `from` sent FIN (or went away cleanly): no more bytes will come. */
  ended = false;
  /** Nothing more will be written: the FIN was passed on, or `to` is gone. */
  done = false;
  private queue: Uint8Array[] = [];
  private head = 0;
  /** Bandwidth limits of this direction; null = none (the only cost: a null check per chunk). Set by the session. */
  limiter: Limiter | null = null;
  /** `from` is paused: the queue passed the high-water mark. */
  private paused = false;
  /** `from` is paused: the limiter is in debt (resumed by the rate clock, tokensBack). */
  private held = false;
  /** Handed to another process: nothing is written or resumed here (see freeze). */
  private frozen = false;

  constructor(
    private readonly owner: PipeOwner,
    from: AnySocket | null,
    to: AnySocket | null,
  ) {
    this.from = from;
    this.to = to;
  }

  /** Bytes arrived from `from`. */
  push(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    this.owner.idleTicks = 0;
    if (this.limiter !== null && this.limiter.take(chunk.length) && !this.held) this.hold();
    if (this.done) return; // `to` is gone; the session closes once the other pipe finishes
    const to = this.to;
    if (this.queued === 0 && to !== null) {
      const written = to.write(chunk);
      if (written === chunk.length) return;
      if (written < 0) return this.owner.writeFailed(to);
      chunk = chunk.subarray(written);
    }
    this.queue.push(chunk);
    this.queued += chunk.length;
    if (!this.paused && this.queued >= this.owner.limits.highWaterMark && this.from !== null) {
      this.paused = true;
      if (!this.held) this.from.pause();
    }
  }

  /** The limiter ran into debt: pause `from` until the rate clock gives tokens back. */
  private hold(): void {
    this.held = true;
    this.limiter!.paused();
    if (!this.paused) this.from?.pause();
    waitForTokens(this);
  }

  /** The limiter is out of debt (the rate clock): resume `from` unless the queue still holds it. */
  tokensBack(now: number): void {
    this.held = false;
    this.limiter?.resumed(now);
    if (!this.paused && !this.frozen) this.from?.resume();
  }

  /** Puts bytes in front of everything queued (a PROXY header for a new upstream connection). */
  unshift(bytes: Uint8Array): void {
    this.queue.splice(this.head, 0, bytes);
    this.queued += bytes.length;
  }

  /** `to` can take more (drain), or has just connected: write what is queued. */
  flush(): void {
    const to = this.to;
    if (to === null || this.done || this.frozen) return;
    const queue = this.queue;
    while (this.head < queue.length) {
      let chunk = queue[this.head]!;
      let taken = 1;
      if (chunk.length < COALESCE_BYTES && this.head + 1 < queue.length) {
        let end = this.head + 1;
        let total = chunk.length;
        while (end < queue.length && total < COALESCE_BYTES) total += queue[end++]!.length;
        chunk = Buffer.concat(queue.slice(this.head, end), total);
        taken = end - this.head;
      }
      const written = to.write(chunk);
      if (written < 0) return this.owner.writeFailed(to);
      this.queued -= written;
      if (written < chunk.length) {
        this.head += taken - 1;
        queue[this.head] = chunk.subarray(written);
        break;
      }
      this.head += taken;
    }
    if (this.head === queue.length) {
      queue.length = 0;
      this.head = 0;
    } else if (this.head > 1024) {
      this.queue = queue.slice(this.head);
      this.head = 0;
    }
    if (this.paused && this.queued <= this.owner.limits.lowWaterMark) {
      this.paused = false;
      if (!this.held) this.from?.resume();
    }
    if (this.queued === 0 && this.ended) this.finish();
  }

  /** `from` sent FIN: pass it on once the queue is written. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.queued === 0 && this.to !== null) this.finish();
  }

  /**
   * Takes every queued byte out and stops writing (a session handed to another process takes
   * them along). Its sockets are paused by the session; `drain` may still fire here and must
   * neither write what the new process now owns nor resume a paused reader.
   */
  freeze(): Uint8Array {
    const bytes = Buffer.concat(this.queue.slice(this.head), this.queued);
    this.queue = [];
    this.head = 0;
    this.queued = 0;
    this.frozen = true;
    return bytes;
  }

  /** The handover did not happen: the bytes are queued again, in front, and written. */
  thaw(bytes: Uint8Array): void {
    this.frozen = false;
    if (bytes.length > 0) {
      this.queue.unshift(bytes);
      this.queued += bytes.length;
    }
    this.flush();
  }

  /** `to` is gone: nothing more can be written; queued bytes are dropped. Returns how many. */
  abandon(): number {
    const dropped = this.queued;
    this.limiter?.release();
    this.done = true;
    this.queue.length = 0;
    this.head = 0;
    this.queued = 0;
    return dropped;
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    if (!this.owner.closesAfter(this)) this.to!.shutdown();
    this.owner.pipeDone();
  }
}
