/** Rounds: every contender once per row, the start rotated each round; a failed sample is one line. */
import { StoppingError, isStopping } from "./procs.ts";

/** `list` rotated by `round` (A B C, B C A, C A B, …): no one always goes first after a quiet period. */
export function rotated<T>(list: readonly T[], round: number): T[] {
  return list.map((_, i) => list[(i + round) % list.length]!);
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
