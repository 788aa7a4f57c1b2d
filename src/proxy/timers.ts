/**
 * The session clock: one interval sweep over the open sessions, not one timer per session.
 * Each listener's timeouts are turned into counts of sweeps (`SweptTimers`); a session counts its
 * own idle sweeps (bytes read zero them) and sweeps without progress of its queues, and
 * closes itself when one passes its listener's limit (Session.tick).
 *
 * The connect deadline of an upstream connect attempt runs on the same clock (Connector.tick):
 * no timer is armed and cleared per connect.
 *
 * The tick is a tenth of the shortest timeout in use, between 10 ms and 1 s. A count starts at
 * an event between two sweeps, so it takes one sweep more than the timeout holds ticks: a
 * timeout fires up to a tick (plus the rounding up) late, never early.
 */

/** The listener options the clock reads (context.ts's ListenerOptions has them). */
export interface TimerOptions {
  connectTimeout: number;
  idleTimeout: number;
  halfClosedTimeout: number;
  writeTimeout: number;
  maxSessionDuration: number;
  helloTimeout: number;
  /** A terminating listener (the clock bounds its handshakes); null = none. */
  tls: unknown;
}

/** A listener's timers the sweep runs, in ms; 0 = off. */
export interface SweptTimers {
  /** One upstream connect attempt (connect_timeout). */
  connect: number;
  /** No bytes either way (idle_timeout). */
  idle: number;
  /** No bytes once one direction ended (half_closed_timeout). */
  halfClosed: number;
  /** Bytes queued and none taken by their reader (write_timeout). */
  write: number;
  /** ms from accept (max_session_duration). */
  maxDuration: number;
  /** ms from accept for a TLS client's handshake (hello_timeout; the preface has its own timer). */
  hello: number;
}

export const NO_TIMERS: SweptTimers = { connect: 0, idle: 0, halfClosed: 0, write: 0, maxDuration: 0, hello: 0 };

const MIN_TICK = 10;
const MAX_TICK = 1000;

/** The sweep interval for these listeners, or 0 when none has a timer the sweep runs. */
export function tickFor(listeners: readonly { options: TimerOptions }[]): number {
  let shortest = Number.POSITIVE_INFINITY;
  for (const { options } of listeners) {
    for (const ms of [options.connectTimeout, options.idleTimeout, options.halfClosedTimeout, options.writeTimeout, options.maxSessionDuration])
      if (ms > 0) shortest = Math.min(shortest, ms);
    if (options.tls !== null) shortest = Math.min(shortest, options.helloTimeout);
  }
  if (shortest === Number.POSITIVE_INFINITY) return 0;
  return Math.min(MAX_TICK, Math.max(MIN_TICK, Math.floor(shortest / 10)));
}

/** A listener's timers, for a router whose sweep runs (tickFor > 0). */
export function sweptTimers(options: TimerOptions): SweptTimers {
  return {
    connect: options.connectTimeout,
    idle: options.idleTimeout,
    halfClosed: options.halfClosedTimeout,
    write: options.writeTimeout,
    maxDuration: options.maxSessionDuration,
    hello: options.tls !== null ? options.helloTimeout : 0,
  };
}
