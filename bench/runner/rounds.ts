/** Rounds: every contender once per row, the start rotated each round; a failed sample is one line. */
import { StoppingError, isStopping } from "./procs.ts";

/**
 * `list` in another order each round: rotated by `round` (A B C, B C A, C A B), and every other
 * cycle the reversed list rotated (C B A, B A C, A C B). No one always goes first after a quiet
 * period, and no one always runs right after the same contender: a new-connection row leaves
 * its TIME_WAIT sockets to whoever runs next, and that one pays for them (in a 15-round run of
 * tcprouter and bun-floor, the second of a round spent ~7 % more CPU per connection).
 */
export function rotated<T>(list: readonly T[], round: number): T[] {
  const order = Math.floor(round / list.length) % 2 === 0 ? list : [...list].reverse();
  return order.map((_, i) => order[(i + round) % order.length]!);
}

/**
 * What went wrong in one check or sample, as the one line kept in the table and the JSON. When
 * the bench is stopping (Ctrl-C, SIGTERM) it throws instead: the round loop must end, not go on.
 */
export function failure(error: unknown): string {
  if (error instanceof StoppingError || isStopping()) throw new StoppingError();
  return (error as Error).message.split("\n")[0]!;
}

/** `round 2/5  get          tcprouter 41667 req/s`: the progress line of one sample. */
export function roundLine(round: number, rounds: number, row: string, rowWidth: number, contender: string, contenderWidth: number, text: string): string {
  return `round ${round + 1}/${rounds}  ${row.padEnd(rowWidth)} ${contender.padEnd(contenderWidth)} ${text}`;
}
