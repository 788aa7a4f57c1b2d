/**
 * Issue 13's state where an operator looks: `check`, /status, the status page, metrics and
 * the access log show a Sentinel switch, sessions closed as target_down, passive ejection and
 * slow start.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderPlan } from "../../src/commands/check.ts";
import { AccessLog } from "../../src/observe/access-log.ts";
import { startAdmin, type Status } from "../../src/observe/admin.ts";
import { STATUS_PAGE } from "../../src/observe/status-page.ts";
import { echo, freePort, listen, waitFor, type Server } from "../helpers/net.ts";
import { scrape } from "../helpers/prometheus.ts";
import { fakeSentinel, publish, type FakeState } from "../helpers/replication.ts";
import { startRouter } from "../helpers/router.ts";

const opened: { stop(closeActive: boolean): void }[] = [];
const servers: Server[] = [];
afterEach(async () => {
  for (const fake of opened.splice(0)) fake.stop(true);
  for (const server of servers.splice(0)) await server.stop();
});

test("a Sentinel switch, target_down closes, ejection and slow start show in check, /status, the page, metrics and the access log", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tcprouter-failover-visibility-"));
  try {
    const a = listen(echo);
    const b = listen(echo);
    servers.push(a, b);
    const states: FakeState[] = [0, 1, 2].map(() => ({ master: a.port, subscribers: [], asked: 0 }));
    const ports = states.map((state) => fakeSentinel(state, opened));
    const refusing = freePort();
    await using router = await startRouter(`[[listeners]]
name = "redis"
listen = "127.0.0.1:0"
backend = "redis"
[[listeners]]
name = "cache"
listen = "127.0.0.1:0"
backend = "cache"
[backends.redis]
sentinel = { master = "mymaster", sentinels = [${ports.map((p) => `"127.0.0.1:${p}"`).join(", ")}], poll_interval = "1m" }
[backends.cache]
targets = ["127.0.0.1:${refusing}", "${b.address}"]
max_fails = 1
fail_timeout = "1m"
slow_start = "1m"
`);
    expect(renderPlan(router.config)).toContain(
      `the primary of mymaster as a majority of ${ports.map((p) => `127.0.0.1:${p}`).join(", ")} names it (+switch-master, polled every 1m)`,
    );
    expect(renderPlan(router.config)).toContain("backend cache (round-robin, retries 2, no health checks, max_fails 1 within 1m, slow_start 1m)");
    const accessLog = new AccessLog({ to: join(dir, "access.log"), flushInterval: 60_000 });
    router.view.observe(accessLog);
    const admin = startAdmin({ listen: "127.0.0.1:0", router: router.view });
    try {
      await waitFor(() => states.every((s) => s.subscribers.length === 1), 3000, "subscriptions");
      const kept = await Bun.connect({ hostname: "127.0.0.1", port: router.port, socket: { data() {}, error() {} } });
      await waitFor(() => a.peers.length === 1, 3000, "the session on the primary");
      publish(states[0]!, a.port, b.port);
      await a.peers[0]!.whenClosed;
      kept.terminate();
      // One session to the cache: the refusing target is ejected at its first failure.
      const cache = await Bun.connect({ hostname: "127.0.0.1", port: router.portOf(1), socket: { data() {}, error() {} } });
      await waitFor(() => b.peers.length === 1, 3000, "the cache session on b");
      cache.terminate();
      await waitFor(() => router.view.sessions.size === 0, 3000, "the sessions to end");

      const status = (await (await fetch(`${admin.url}status`)).json()) as Status;
      const redis = status.backends.find((backend) => backend.name === "redis")!;
      expect(redis.sentinel).toMatchObject({ master: "mymaster", primary: `127.0.0.1:${b.port}`, switches: 1, subscribed: 3, sentinels: 3 });
      expect(redis.targets.map((t) => t.target)).toEqual([`127.0.0.1:${b.port}`]);
      const ejected = status.backends.find((backend) => backend.name === "cache")!.targets[0]!;
      expect(ejected.healthy).toBe(false);
      expect(ejected.ejectedUntil).toBeGreaterThan(Date.now());

      const { metrics } = await scrape(`${admin.url}metrics`);
      expect(metrics.get("tcprouter_sentinel_switches_total", { backend: "redis" })).toBe(1);
      expect(metrics.get("tcprouter_sentinel_subscriptions", { backend: "redis" })).toBe(3);
      expect(metrics.get("tcprouter_sessions_closed_total", { listener: "redis", reason: "target_down" })).toBe(1);
      expect(metrics.get("tcprouter_target_ejected", { backend: "cache", target: `127.0.0.1:${refusing}` })).toBe(1);
      expect(metrics.get("tcprouter_target_slow_start", { backend: "cache", target: b.address })).toBe(0);

      expect(STATUS_PAGE).toContain("Sentinel: primary of");
      expect(STATUS_PAGE).toContain("(max_fails)");
      accessLog.close();
      const lines = readFileSync(join(dir, "access.log"), "utf8").split("\n");
      expect(lines.filter((line) => line.includes("reason=target_down") && line.includes(`target=127.0.0.1:${a.port}`))).toHaveLength(1);
    } finally {
      await admin.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
