/**
 * The session clock: one interval sweep over the open sessions, not one timer per session.
 * Each session checks its listener's timeouts (Session.tick), and the connect deadline of an
 * upstream connect attempt runs on the same sweep (Connector.tick): no timer is armed and
 * cleared per session or per connect.
 *
 * Nothing on the byte path reads a clock: a chunk read only zeroes the session's count of idle
 * sweeps. The sweep reads the monotonic clock once; the first sweep after an event (the last
 * byte, a connect attempt, the last progress of a queue) notes its time, and a later sweep
 * closes the session once the clock has moved the timeout past that note.
 *
 * That first sweep comes after the event, so a timeout fires never early, even when the
 * interval fires a little early (Bun's can, by a fraction of a millisecond) or a sweep runs
 * late; and late by at most two ticks (the wait for the first sweep, and the one that sees the
 * timeout passed). The tick is a tenth of the shortest timeout in use, between 10 ms and 1 s.
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
