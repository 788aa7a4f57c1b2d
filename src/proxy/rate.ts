/**
 * Bandwidth limits (`upload_rate`, `download_rate` and their `_per_ip` forms): a token bucket
 * per limit and direction, and the one clock that gives paused pipes their tokens back.
 *
 * A pipe with a limiter takes tokens for each chunk it reads, after the fact: the bytes are
 * read already and go on at once, nothing is held back or dropped. When a bucket runs into
 * debt the pipe pauses its reading socket (the pause backpressure uses, see pipe.ts), and the
 * rate clock resumes it once every bucket of its limiter is out of debt. So a direction moves
 * at most `burst + rate × t` bytes in t seconds, plus one read. A pipe without limits has no
 * limiter (one null check per chunk), and nothing here runs.
 *
 * One clock per process, ticking only while some pipe waits for tokens: no timer per session.
 */
import type { SessionControls } from "../config/types.ts";

/** The rate clock's tick while a pipe waits for tokens, ms. */
export const RATE_TICK = 10;

/**
 * A bucket saves up at most this long of its rate, and never less than 64 KiB. The burst must
 * cover what accrues between a bucket going out of debt and the clock resuming its pipe (a
 * tick, plus a busy event loop's lateness), else a limited session falls short of its rate;
 * 50 ms does, and keeps the burst well below a pipe's high-water mark (1 MiB) at the rates
 * that matter: 4 MB/s saves 200 KB, 50 MB/s 2.5 MB (under 2 % of a second's bytes either way).
 * 64 KiB is one typical read, so a slow rate does not pause a session at every chunk.
 */
const BURST_MS = 50;
const MIN_BURST = 64 * 1024;

/** The burst of a bucket of `rate` bytes per second. */
export function burstOf(rate: number): number {
  return Math.max(MIN_BURST, (rate * BURST_MS) / 1000);
}

/** `rate` bytes a second, at most `burst` saved up; negative tokens are a debt to wait out. */
export class Bucket {
  readonly burst: number;
  private tokens: number;
  private last: number;

  constructor(
    readonly rate: number,
    now = performance.now(),
  ) {
    this.burst = burstOf(rate);
    this.tokens = this.burst;
    this.last = now;
  }

  /** The tokens now (refilled from the clock); below 0 while in debt. */
  refill(now: number): number {
    const tokens = this.tokens + ((now - this.last) * this.rate) / 1000;
    this.tokens = Math.min(tokens, this.burst);
    this.last = now;
    return this.tokens;
  }

  /** Takes `bytes` tokens, into debt if need be; true while in debt. */
  take(bytes: number, now: number): boolean {
    this.tokens = this.refill(now) - bytes;
    return this.tokens < 0;
  }
}

/** The buckets of one `_per_ip` limit: one per client address, shared by its sessions, dropped with its last one. */
export class BucketsByAddress {
  private readonly byHost = new Map<string, { bucket: Bucket; sessions: number }>();

  constructor(readonly rate: number) {}

  /** The address's bucket, counting one more session on it (give it back with release). */
  take(host: string): Bucket {
    let entry = this.byHost.get(host);
    if (entry === undefined) this.byHost.set(host, (entry = { bucket: new Bucket(this.rate), sessions: 0 }));
    entry.sessions++;
    return entry.bucket;
  }

  release(host: string): void {
    const entry = this.byHost.get(host);
    if (entry !== undefined && --entry.sessions <= 0) this.byHost.delete(host);
  }

  /** Addresses with a bucket now. */
  get size(): number {
    return this.byHost.size;
  }
}

/** A listener's or a backend's limits as sessions use them; each `_per_ip` limit has its shared buckets. */
export interface RateLimits {
  /** Bytes per second per session, client → upstream and upstream → client; 0 = no limit. */
  upload: number;
  download: number;
  uploadPerIp: BucketsByAddress | null;
  downloadPerIp: BucketsByAddress | null;
}

/** The runtime limits of a listener's or backend's config; null when it limits nothing (no limiter is made). */
export function rateLimits(controls: SessionControls | null | undefined): RateLimits | null {
  if (controls == null) return null;
  const { uploadRate, downloadRate, uploadRatePerIp, downloadRatePerIp } = controls;
  if (uploadRate === 0 && downloadRate === 0 && uploadRatePerIp === 0 && downloadRatePerIp === 0) return null;
  return {
    upload: uploadRate,
    download: downloadRate,
    uploadPerIp: uploadRatePerIp > 0 ? new BucketsByAddress(uploadRatePerIp) : null,
    downloadPerIp: downloadRatePerIp > 0 ? new BucketsByAddress(downloadRatePerIp) : null,
  };
}

/** Each backend's limits, made once per Backend object (a reload makes new ones: new sessions get the new limits). */
const byBackend = new WeakMap<object, RateLimits | null>();

/** A backend's runtime limits (its per-address buckets live as long as the Backend object). */
export function backendLimits(backend: { readonly controls?: SessionControls | null }): RateLimits | null {
  let limits = byBackend.get(backend);
  if (limits === undefined) byBackend.set(backend, (limits = rateLimits(backend.controls)));
  return limits;
}

/** Time spent waiting for tokens, and how often, by direction, in this process (metrics.ts). */
export const rateStats = { up: { pauses: 0, waitedMs: 0 }, down: { pauses: 0, waitedMs: 0 } };

/** The buckets one direction of one session takes from. */
export class Limiter {
  /** performance.now() when the pipe last paused for tokens. */
  private since = 0;

  constructor(
    readonly direction: "up" | "down",
    private readonly buckets: Bucket[],
    /** The shared buckets it counts on, given back by release. */
    private shared: { set: BucketsByAddress; host: string }[],
  ) {}

  /** Takes tokens for `bytes` read; true when the reader must wait (a bucket is in debt). */
  take(bytes: number): boolean {
    const now = performance.now();
    let debt = false;
    for (const bucket of this.buckets) if (bucket.take(bytes, now)) debt = true;
    return debt;
  }

  /** No bucket is in debt any more. */
  ready(now: number): boolean {
    for (const bucket of this.buckets) if (bucket.refill(now) < 0) return false;
    return true;
  }

  /** Gives the shared buckets back (the session ended). Idempotent. */
  release(): void {
    for (const { set, host } of this.shared) set.release(host);
    this.shared = [];
  }

  /** Counts a pause for tokens. */
  paused(now = performance.now()): void {
    this.since = now;
    rateStats[this.direction].pauses++;
  }

  /** Counts the time waited. */
  resumed(now: number): void {
    rateStats[this.direction].waitedMs += now - this.since;
  }
}

/**
 * The limiters of a session's two pipes (client → upstream, upstream → client) from its
 * listener's and its backend's limits: each limit that is on is one bucket, all of them apply.
 * `host` is read only when a `_per_ip` limit is on (a getpeername(2) spared).
 */
export function limiters(listener: RateLimits | null, backend: RateLimits | null, host: () => string): [Limiter | null, Limiter | null] {
  const up: Bucket[] = [];
  const down: Bucket[] = [];
  const upShared: { set: BucketsByAddress; host: string }[] = [];
  const downShared: { set: BucketsByAddress; host: string }[] = [];
  for (const limits of [listener, backend]) {
    if (limits === null) continue;
    if (limits.upload > 0) up.push(new Bucket(limits.upload));
    if (limits.download > 0) down.push(new Bucket(limits.download));
    if (limits.uploadPerIp !== null) {
      const client = host();
      up.push(limits.uploadPerIp.take(client));
      upShared.push({ set: limits.uploadPerIp, host: client });
    }
    if (limits.downloadPerIp !== null) {
      const client = host();
      down.push(limits.downloadPerIp.take(client));
      downShared.push({ set: limits.downloadPerIp, host: client });
    }
  }
  return [up.length > 0 ? new Limiter("up", up, upShared) : null, down.length > 0 ? new Limiter("down", down, downShared) : null];
}

/** A pipe paused for tokens (pipe.ts). */
export interface WaitsForTokens {
  readonly limiter: Limiter | null;
  /** Every bucket is out of debt: the pipe may read again. */
  tokensBack(now: number): void;
}

let waiting: WaitsForTokens[] = [];
let clock: ReturnType<typeof setInterval> | undefined;

/** Resumes `pipe` on a later tick of the rate clock, once its limiter is out of debt. */
export function waitForTokens(pipe: WaitsForTokens): void {
  waiting.push(pipe);
  if (clock === undefined) {
    clock = setInterval(tick, RATE_TICK);
    clock.unref();
  }
}

function tick(): void {
  const now = performance.now();
  const list = waiting;
  waiting = []; // a pipe resumed below may pause again (and join the new list) at once
  for (const pipe of list) {
    if (pipe.limiter === null || pipe.limiter.ready(now)) pipe.tokensBack(now);
    else waiting.push(pipe);
  }
  if (waiting.length === 0) {
    clearInterval(clock);
    clock = undefined;
  }
}
