import { describe, expect, test } from "bun:test";
import type { SentinelStatus } from "../../src/backend/sources/sentinel.ts";
import type { Status } from "../../src/observe/admin.ts";
import { mergeStatus } from "../../src/workers/admin.ts";

/** A worker's /status with one Sentinel backend and no traffic. */
function workerStatus(sentinel: SentinelStatus): Status {
  return {
    version: "0",
    time: new Date(0).toISOString(),
    startedAt: new Date(0).toISOString(),
    uptimeSeconds: 1,
    ready: true,
    draining: false,
    totals: { activeSessions: 0, totalSessions: 0 } as Status["totals"],
    listeners: [],
    backends: [{ name: "redis", targets: [], sentinel }],
    process: { rssBytes: 0, cpuSeconds: 0 },
  };
}

const base: SentinelStatus = { master: "mymaster", primary: "127.0.0.1:7001", switches: 1, lastSwitch: 1000, subscribed: 3, sentinels: 3 };
const merge = (...statuses: SentinelStatus[]) =>
  mergeStatus(
    statuses.map((s, i) => ({ worker: i + 1, pid: 100 + i, status: workerStatus(s) })),
    { count: statuses.length, stopping: false, history: false },
  ).backends[0]!.sentinel;

// The supervisor's merged /status dropped each backend's `sentinel` entry, so with --workers
// the status page and /status could not say which node was the primary.
describe("the supervisor's /status keeps a Sentinel backend's source", () => {
  test("workers that agree: their primary, the most switches, the fewest open subscriptions", () => {
    expect(merge(base, { ...base, switches: 2, lastSwitch: 2000, subscribed: 2 })).toEqual({
      master: "mymaster",
      primary: "127.0.0.1:7001",
      switches: 2,
      lastSwitch: 2000,
      subscribed: 2,
      sentinels: 3,
    });
  });

  test("workers that disagree on the primary: mixed", () => {
    expect(merge(base, { ...base, primary: "127.0.0.1:7002" })?.primary).toBe("mixed");
  });

  test("a backend without a Sentinel source has no sentinel entry", () => {
    const status = workerStatus(base);
    delete status.backends[0]!.sentinel;
    const merged = mergeStatus([{ worker: 1, pid: 1, status }], { count: 1, stopping: false, history: false });
    expect("sentinel" in merged.backends[0]!).toBe(false);
  });
});
