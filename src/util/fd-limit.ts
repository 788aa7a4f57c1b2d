/**
 * The process's open-file limit. Bun raises the soft limit to the hard one at start; sessions
 * beyond what it allows would make accept() fail with EMFILE, which Bun 1.4 retries in a busy
 * loop (oven-sh/bun PR #32705). The router refuses connections before that point instead.
 */
import { readFileSync } from "node:fs";

/** File descriptors kept free for listeners, health probes, logs and the runtime. */
export const FD_RESERVE = 64;

/** The soft limit on open files, or 0 where it cannot be read (not Linux). */
export function openFileLimit(): number {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((text) => text.startsWith("Max open files"));
    const soft = line?.split(/\s{2,}/)[1];
    return soft === undefined || soft === "unlimited" ? 0 : Number(soft) || 0;
  } catch {
    return 0;
  }
}

/** Sessions that fit in the limit: two descriptors each (client and upstream); 0 = no cap known. */
export function sessionCapacity(limit = openFileLimit()): number {
  return limit > 0 ? Math.max(1, Math.floor((limit - FD_RESERVE) / 2)) : 0;
}
