/**
 * Backends end to end (issue 3): real redis-servers as targets, started and killed by the tests,
 * behind a router made from a TOML config. Balance per algorithm, health checks marking a killed
 * target down and back up, retries hiding a dead target, source-hash stability, backups, and a
 * backend with nothing left. Limits (per target, per listener, the queue) are in
 * backends-limits.test.ts.
 *
 * Which target served a session is read two ways that must agree: the router's own counters
 * (`backends()`), and each Redis's `INFO stats` or, per session, `CONFIG GET port` sent through it.
 */
import { describe, expect, test } from "bun:test";
import { BALANCES, type Balance } from "../../src/backend/balancer.ts";
import { unacceptingListener, waitFor } from "../helpers/net.ts";
import { connectionCounters, hasRedis, once, RedisClient, type RedisServer, startRedises, startRedisOn, whichServer } from "../helpers/redis.ts";
import { type RouterUnderTest, startRouter } from "../helpers/router.ts";

if (!hasRedis) console.warn("skipping backend tests: redis-server or redis-cli is not installed");

/** A config with one listener on a free port and one backend "redis". */
function config(o: { targets: string[]; balance?: Balance; retries?: number; health?: string; listener?: string; defaults?: string }): string {
  return `
[defaults]
${o.defaults ?? ""}

[[listeners]]
name = "redis"
listen = "127.0.0.1:0"
backend = "redis"
${o.listener ?? ""}

[backends.redis]
balance = "${o.balance ?? "round-robin"}"
retries = ${o.retries ?? 0}
targets = [${o.targets.join(", ")}]
${o.health === undefined ? "" : `\n[backends.redis.health]\n${o.health}`}
`;
}

/** One target of the config, with extra keys (`weight = 2`). */
const target = (redis: RedisServer, extra = "") => `{ address = "127.0.0.1:${redis.port}"${extra === "" ? "" : `, ${extra}`} }`;

/** Fast checks: a killed target is down after fall × interval = 300 ms, back after rise × interval = 200 ms. */
const INTERVAL = 100;
const FALL = 3;
const RISE = 2;
const HEALTH = `interval = "${INTERVAL}ms"\ntimeout = "${INTERVAL}ms"\nfall = ${FALL}\nrise = ${RISE}\nsend = "PING\\r\\n"\nexpect = "+PONG"`;
/** Timers and a busy 2-core machine: this much late is still on time. */
const SLACK = 400;

/** A source address per client: Linux routes all of 127.0.0.0/8 to lo. */
const sourceIp = (i: number) => `127.0.0.${2 + (i % 200)}`;

/** One short session (PING, then close) from `from`; waits until the router has closed it too. */
async function pingThrough(router: RouterUnderTest, from?: string): Promise<void> {
  expect(await once(router.port, ["PING"], from)).toBe("PONG");
  await waitFor(() => router.stats().activeSessions === 0, 5000, "the session to close in the router");
}

/** Sessions the router sent to each server (its counters), in the order given. */
const sessionsOf = (router: RouterUnderTest, servers: RedisServer[]) => servers.map((server) => router.target(server.port).sessions);

describe.skipIf(!hasRedis)("balance", () => {
  // Two targets, weights 1 and 2. Sequential short sessions leave every target at 0 open
  // sessions when the next is picked, so least-conn breaks the tie by weight and random-two's
  // first draw wins: all four follow the weights. Exact for the deterministic ones; within
  // 4 standard deviations of the binomial for random-two and source-hash (60 client IPs).
  const cases: { balance: Balance; sessions: number; tolerance: number }[] = [
    { balance: "round-robin", sessions: 30, tolerance: 0 },
    { balance: "least-conn", sessions: 30, tolerance: 0 },
    { balance: "random-two", sessions: 300, tolerance: 33 },
    { balance: "source-hash", sessions: 60, tolerance: 15 },
  ];
  test.each(cases)(
    "$balance with weights 1 and 2 sends a third of $sessions sessions to the lighter target",
    async ({ balance, sessions, tolerance }) => {
      await using redis = await startRedises(2);
      await using router = await startRouter(config({ balance, targets: [target(redis[0]!), target(redis[1]!, "weight = 2")] }));
      await using counters = await connectionCounters(redis);
      for (let i = 0; i < sessions; i++) await pingThrough(router, balance === "source-hash" ? sourceIp(i) : undefined);

      const [light, heavy] = sessionsOf(router, redis);
      expect(light! + heavy!).toBe(sessions);
      expect(Math.abs(light! - sessions / 3)).toBeLessThanOrEqual(tolerance);
      // What the router counted is what the servers saw.
      expect(await counters.connectionsSince()).toEqual([light!, heavy!]);
      expect(router.stats()).toMatchObject({ totalSessions: sessions, connectFailures: 0, noTarget: 0 });
    },
    30_000,
  );

  test("least-conn sends new sessions to the target with fewer open sessions", async () => {
    await using redis = await startRedises(2);
    const [a, b] = [redis[0]!, redis[1]!];
    await using router = await startRouter(config({ balance: "least-conn", targets: [target(a), target(b)] }));
    await using counters = await connectionCounters(redis);
    const held: RedisClient[] = [];
    try {
      for (let i = 0; i < 4; i++) held.push(await RedisClient.connect(router.port));
      const served = await Promise.all(held.map((client) => client.serverPort()));
      expect(served.filter((port) => port === a.port)).toHaveLength(2);
      expect(await counters.connected()).toEqual([2, 2]);

      // Close both sessions on a: a has 0 open, b has 2.
      for (const [i, client] of held.entries()) if (served[i] === a.port) await client.close();
      await waitFor(() => router.target(a.port).active === 0, 5000, "a's sessions to close");
      // Short sessions keep a at 0 open at each pick: every one goes to a.
      for (let i = 0; i < 5; i++) expect(await whichServer(router.port)).toBe(a.port);
      await waitFor(() => router.stats().activeSessions === 2, 5000, "the short sessions to close");
      // Held sessions fill a up to b's 2.
      for (let i = 0; i < 2; i++) {
        const client = await RedisClient.connect(router.port);
        held.push(client);
        expect(await client.serverPort()).toBe(a.port);
      }
      expect(await counters.connected()).toEqual([2, 2]);
      expect(router.target(a.port).active).toBe(2);
      expect(router.target(b.port).active).toBe(2);
    } finally {
      await Promise.all(held.map((client) => client[Symbol.asyncDispose]()));
    }
  }, 30_000);

  test("least-conn keeps open sessions in proportion to the weights (1:3)", async () => {
    await using redis = await startRedises(2);
    const [a, b] = [redis[0]!, redis[1]!];
    await using router = await startRouter(config({ balance: "least-conn", targets: [target(a), target(b, "weight = 3")] }));
    await using counters = await connectionCounters(redis);
    const held: RedisClient[] = [];
    try {
      for (let i = 0; i < 8; i++) {
        const client = await RedisClient.connect(router.port);
        held.push(client);
        await client.serverPort(); // the upstream is open before the next pick
      }
      expect(await counters.connected()).toEqual([2, 6]);
    } finally {
      await Promise.all(held.map((client) => client[Symbol.asyncDispose]()));
    }
  }, 30_000);
});

describe.skipIf(!hasRedis)("health", () => {
  test("active checks mark a killed target down within fall × interval, and up after rise once restarted", async () => {
    await using redis = await startRedises(3);
    const dead = redis[1]!;
    await using router = await startRouter(config({ targets: redis.map((r) => target(r)), health: HEALTH }));
    await dead.kill();
    const killedAt = Date.now();
    await waitFor(() => !router.target(dead.port).healthy, 5000, "the killed target to be marked down");
    const downAfter = Date.now() - killedAt;
    // The first failed check comes within one interval of the kill, the fall-th fall - 1 intervals later.
    expect(downAfter).toBeLessThanOrEqual(FALL * INTERVAL + SLACK);
    expect(downAfter).toBeGreaterThanOrEqual((FALL - 1) * INTERVAL - 50);
    expect(router.matching(`target 127.0.0.1:${dead.port} is down`)).toEqual([
      `info backend redis: target 127.0.0.1:${dead.port} is down (${FALL} failed checks: connection refused)`,
    ]);

    // No new session goes to it: 30 sessions, 15 on each live target, not one failed connect.
    for (let i = 0; i < 30; i++) await pingThrough(router);
    expect(sessionsOf(router, redis)).toEqual([15, 0, 15]);
    expect(router.stats()).toMatchObject({ connectFailures: 0, noTarget: 0 });

    // Restarted on the same port: up after rise passed checks.
    await using again = await startRedisOn(dead.port);
    const restartedAt = Date.now();
    await waitFor(() => router.target(again.port).healthy, 5000, "the restarted target to be marked up");
    expect(Date.now() - restartedAt).toBeLessThanOrEqual(RISE * INTERVAL + SLACK);
    expect(router.matching(`target 127.0.0.1:${again.port} is up`)).toEqual([
      `info backend redis: target 127.0.0.1:${again.port} is up (${RISE} passed checks)`,
    ]);
    await using counters = await connectionCounters([again]);
    await counters.mark();
    const before = router.target(again.port).sessions;
    for (let i = 0; i < 30; i++) await pingThrough(router);
    const back = router.target(again.port).sessions - before;
    expect(back).toBeGreaterThanOrEqual(9); // its share again, give or take the round-robin catching up
    expect(back).toBeLessThanOrEqual(11);
    // The health checks connect too: the restarted server saw the sessions and a few probes.
    const [seen] = await counters.connectionsSince();
    expect(seen!).toBeGreaterThanOrEqual(back);
  }, 30_000);

  test("a target killed mid-run: clients see no failure, and no session goes to it once it is down", async () => {
    await using redis = await startRedises(3);
    const dead = redis[0]!;
    await using router = await startRouter(config({ targets: redis.map((r) => target(r)), retries: 2, health: HEALTH }));
    let sessionsWhenDown = -1;
    for (let i = 0; i < 150; i++) {
      if (i === 30) await dead.kill(); // between two sessions: none is open on it
      await pingThrough(router);
      if (sessionsWhenDown < 0 && !router.target(dead.port).healthy) sessionsWhenDown = router.target(dead.port).sessions;
    }
    expect(sessionsWhenDown).toBeGreaterThan(0);
    // Picked (and failed over) at most until it was marked down, never after.
    expect(router.target(dead.port).sessions).toBe(sessionsWhenDown);
    // Each failed connect was a passive failed check, and fall of them mark it down.
    expect(router.target(dead.port).connectFailures).toBe(router.stats().connectFailures);
    expect(router.stats().connectFailures).toBeLessThanOrEqual(FALL);
    expect(router.stats()).toMatchObject({ totalSessions: 150, noTarget: 0 });
  }, 30_000);

  test("with no healthy target and no backup, a client is closed at once with a warning naming the backend", async () => {
    await using redis = await startRedises(2);
    await using router = await startRouter(config({ targets: redis.map((r) => target(r)), retries: 1, health: HEALTH }));
    for (const server of redis) await server.kill();
    await waitFor(
      () =>
        router
          .backends()
          .get("redis")!
          .every((t) => !t.healthy),
      5000,
      "both targets to be marked down",
    );
    const failuresBefore = router.stats().connectFailures;

    const started = Date.now();
    await using client = await RedisClient.connect(router.port);
    const sourcePort = client.socket.localPort;
    await expect(client.call("PING")).rejects.toThrow("connection closed");
    await client.whenClosed;
    // "At once": well before the connect timeout (10 s) or the queue timeout (5 s).
    expect(Date.now() - started).toBeLessThan(SLACK);
    expect(client.bytesIn).toBe(0);
    expect(router.stats()).toMatchObject({ noTarget: 1, connectFailures: failuresBefore, activeSessions: 0 });
    expect(router.matching("no target available")).toEqual([`warn client 127.0.0.1:${sourcePort} → backend redis: no target available`]);
  }, 30_000);

  test("backups serve only while every primary is down", async () => {
    await using redis = await startRedises(3);
    const [p1, p2, backup] = [redis[0]!, redis[1]!, redis[2]!];
    await using router = await startRouter(config({ targets: [target(p1), target(p2), target(backup, "backup = true")], retries: 2, health: HEALTH }));
    const served = async (n: number) => {
      const ports: number[] = [];
      for (let i = 0; i < n; i++) ports.push(await whichServer(router.port));
      await waitFor(() => router.stats().activeSessions === 0, 5000, "the sessions to close");
      return ports;
    };
    expect((await served(20)).filter((port) => port === backup.port)).toEqual([]);
    expect(sessionsOf(router, redis)).toEqual([10, 10, 0]);

    await p1.kill();
    await waitFor(() => !router.target(p1.port).healthy, 5000, "p1 to be marked down");
    expect(new Set(await served(10))).toEqual(new Set([p2.port]));

    await p2.kill();
    await waitFor(() => !router.target(p2.port).healthy, 5000, "p2 to be marked down");
    expect(new Set(await served(10))).toEqual(new Set([backup.port]));

    await using p1Again = await startRedisOn(p1.port);
    await waitFor(() => router.target(p1Again.port).healthy, 5000, "p1 to be marked up");
    expect(new Set(await served(10))).toEqual(new Set([p1.port]));
    expect(router.target(backup.port).sessions).toBe(10);
    // Connects that failed before a primary was marked down were retried on the other primary or the backup, never lost.
    expect(router.stats().noTarget).toBe(0);
  }, 30_000);
});

describe.skipIf(!hasRedis)("retries", () => {
  // No health checks: the dead target stays "healthy" and keeps being picked; every time, the
  // failed connect is retried on another target.
  test.each([...BALANCES])(
    "%s: with one of three targets dead, 200 sequential clients see zero failures",
    async (balance) => {
      await using redis = await startRedises(3);
      const dead = redis[2]!;
      await dead.kill();
      await using router = await startRouter(config({ balance, targets: redis.map((r) => target(r)), retries: 2 }));
      let failures = 0;
      for (let i = 0; i < 200; i++) {
        try {
          // Clients from 50 addresses, so that source-hash sends some of them to the dead target.
          if ((await once(router.port, ["PING"], sourceIp(i % 50))) !== "PONG") failures++;
        } catch {
          failures++;
        }
      }
      expect(failures).toBe(0);
      const stats = router.stats();
      expect(stats.noTarget).toBe(0);
      // The dead target was really tried (the retries did the work), and only it failed.
      expect(stats.connectFailures).toBeGreaterThan(0);
      expect(router.target(dead.port).connectFailures).toBe(stats.connectFailures);
      expect(router.target(redis[0]!.port).connectFailures + router.target(redis[1]!.port).connectFailures).toBe(0);
    },
    30_000,
  );
});

describe.skipIf(!hasRedis)("retries after a connect timeout", () => {
  // Regression: a connect that timed out was never retried, so a target whose host does not
  // answer SYNs failed clients even with retries left. Each attempt is now the upstream
  // socket's own data, so a timed-out attempt is retried and its late socket is terminated.
  test("a target whose connects hang is skipped by a retry after connect_timeout", async () => {
    await using redis = await startRedises(1);
    await using hanging = await unacceptingListener(); // connects to it neither succeed nor fail
    await using router = await startRouter(config({ targets: [`"${hanging.address}"`, target(redis[0]!)], retries: 2, defaults: 'connect_timeout = "300ms"' }));
    let failures = 0;
    for (let i = 0; i < 4; i++) {
      try {
        if ((await once(router.port, ["PING"])) !== "PONG") failures++;
      } catch {
        failures++;
      }
    }
    expect(failures).toBe(0);
    expect(router.stats().noTarget).toBe(0);
  }, 30_000);
});

describe.skipIf(!hasRedis)("source-hash", () => {
  test("keeps each client IP on its target, and removing a target moves only that target's clients", async () => {
    await using redis = await startRedises(3);
    const [a, b, c] = [redis[0]!, redis[1]!, redis[2]!];
    const ips = Array.from({ length: 40 }, (_, i) => sourceIp(i));
    const mapping = async (router: RouterUnderTest) => {
      const out = new Map<string, number>();
      for (const ip of ips) out.set(ip, await whichServer(router.port, ip));
      return out;
    };
    await using router = await startRouter(config({ balance: "source-hash", targets: redis.map((r) => target(r)) }));
    const first = await mapping(router);
    // 40 IPs over 3 targets: each has some (a target with none: p ≈ 3 × (2/3)^40 ≈ 3e-7).
    for (const server of redis) expect([...first.values()].filter((port) => port === server.port).length).toBeGreaterThan(0);
    expect(await mapping(router)).toEqual(first);

    // A new router from the config without c.
    await using without = await startRouter(config({ balance: "source-hash", targets: [target(a), target(b)] }));
    const second = await mapping(without);
    for (const ip of ips) {
      if (first.get(ip) === c.port) expect([a.port, b.port]).toContain(second.get(ip)!);
      else expect({ ip, port: second.get(ip) }).toEqual({ ip, port: first.get(ip) });
    }
    // And the first router, with c, still maps as before.
    expect(await mapping(router)).toEqual(first);
  }, 30_000);

  test("a target marked down hands its clients to the others, and gets them back when it is up", async () => {
    await using redis = await startRedises(3);
    const c = redis[2]!;
    await using router = await startRouter(config({ balance: "source-hash", targets: redis.map((r) => target(r)), health: HEALTH }));
    const ips = Array.from({ length: 30 }, (_, i) => sourceIp(i));
    const mapping = async () => {
      const out = new Map<string, number>();
      for (const ip of ips) out.set(ip, await whichServer(router.port, ip));
      return out;
    };
    const first = await mapping();
    await c.kill();
    await waitFor(() => !router.target(c.port).healthy, 5000, "c to be marked down");
    const during = await mapping();
    for (const ip of ips) {
      if (first.get(ip) === c.port) expect(during.get(ip)).not.toBe(c.port);
      else expect(during.get(ip)).toBe(first.get(ip)!);
    }
    await using cAgain = await startRedisOn(c.port);
    await waitFor(() => router.target(cAgain.port).healthy, 5000, "c to be marked up");
    expect(await mapping()).toEqual(first);
  }, 30_000);
});
