/**
 * Limits end to end (issue 3), with real redis-servers as targets: `max_connections` per target
 * (the balancer skips full targets; when all are full a session waits up to `queue_timeout`,
 * then is closed) and per listener (the excess is closed at once and counted).
 */
import { describe, expect, test } from "bun:test";
import { waitFor } from "../helpers/net.ts";
import { connectionCounters, hasRedis, RedisClient, type RedisServer, startRedises, startRedisOn, whichServer } from "../helpers/redis.ts";
import { type RouterUnderTest, startRouter } from "../helpers/router.ts";

if (!hasRedis) console.warn("skipping backend limit tests: redis-server or redis-cli is not installed");

const QUEUE_TIMEOUT = 500;

/** Two targets that take `perTarget` sessions each, and a listener that takes `listenerMax` (0: any). */
function config(redis: RedisServer[], o: { perTarget: number[]; listenerMax?: number; queueTimeout?: string }): string {
  const targets = redis.map((r, i) => `{ address = "127.0.0.1:${r.port}", max_connections = ${o.perTarget[i]} }`);
  return `
[defaults]
queue_timeout = "${o.queueTimeout ?? `${QUEUE_TIMEOUT}ms`}"

[[listeners]]
name = "redis"
listen = "127.0.0.1:0"
backend = "redis"
max_connections = ${o.listenerMax ?? 0}

[backends.redis]
balance = "round-robin"
retries = 0
targets = [${targets.join(", ")}]
`;
}

/** Opens `n` sessions and waits until each has its upstream (a PING answered). */
async function hold(router: RouterUnderTest, n: number): Promise<RedisClient[]> {
  const clients: RedisClient[] = [];
  for (let i = 0; i < n; i++) {
    const client = await RedisClient.connect(router.port);
    clients.push(client);
    expect(await client.call("PING")).toBe("PONG");
  }
  return clients;
}

/** Disposes every client, whatever happened. */
function disposing(clients: RedisClient[]): AsyncDisposable {
  return { [Symbol.asyncDispose]: async () => void (await Promise.all(clients.map((client) => client[Symbol.asyncDispose]()))) };
}

describe.skipIf(!hasRedis)("max_connections per target", () => {
  test("the balancer skips a full target", async () => {
    await using redis = await startRedises(2);
    const [small, big] = [redis[0]!, redis[1]!];
    await using router = await startRouter(config(redis, { perTarget: [1, 0] }));
    const held: RedisClient[] = [];
    await using _ = disposing(held);
    held.push(...(await hold(router, 2))); // round-robin: one on each, small is full
    expect(router.target(small.port).active).toBe(1);
    for (let i = 0; i < 10; i++) expect(await whichServer(router.port)).toBe(big.port);
    expect(router.stats().noTarget).toBe(0);
  }, 30_000);

  test("when every target is full, a new client waits and is served as soon as a session closes", async () => {
    await using redis = await startRedises(2);
    await using router = await startRouter(config(redis, { perTarget: [2, 2] }));
    await using counters = await connectionCounters(redis);
    const held: RedisClient[] = [];
    await using _ = disposing(held);
    held.push(...(await hold(router, 4)));
    expect(await counters.connected()).toEqual([2, 2]);

    const fifth = await RedisClient.connect(router.port);
    held.push(fifth);
    const reply = fifth.call("PING");
    let repliedAt = 0;
    void reply.then(
      () => (repliedAt = Date.now()),
      () => {},
    );
    // It is accepted and waits: open in the router, no upstream for it, no reply.
    await waitFor(() => router.stats().activeSessions === 5, 5000, "the fifth session to open");
    expect(await counters.connected()).toEqual([2, 2]);
    expect(fifth.bytesIn).toBe(0);

    const leaving = held[0]!;
    const freed = await leaving.serverPort();
    const closedAt = Date.now();
    await leaving.close();
    expect(await reply).toBe("PONG");
    expect(repliedAt - closedAt).toBeLessThan(QUEUE_TIMEOUT);
    expect(await fifth.serverPort()).toBe(freed); // the one place that was free
    expect(router.stats()).toMatchObject({ noTarget: 0, activeSessions: 4 });
  }, 30_000);

  test("when every target stays full, a waiting client is closed after queue_timeout", async () => {
    await using redis = await startRedises(2);
    await using router = await startRouter(config(redis, { perTarget: [2, 2] }));
    await using counters = await connectionCounters(redis);
    const held: RedisClient[] = [];
    await using _ = disposing(held);
    held.push(...(await hold(router, 4)));
    await counters.mark();

    const started = Date.now();
    const fifth = await RedisClient.connect(router.port);
    held.push(fifth);
    const sourcePort = fifth.socket.localPort;
    await expect(fifth.call("PING")).rejects.toThrow("connection closed");
    await fifth.whenClosed;
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(QUEUE_TIMEOUT - 20);
    expect(waited).toBeLessThan(QUEUE_TIMEOUT + 1000);
    expect(fifth.bytesIn).toBe(0);
    expect(await counters.connectionsSince()).toEqual([0, 0]); // it never reached a server
    expect(router.stats()).toMatchObject({ noTarget: 1, activeSessions: 4 });
    expect(router.matching("no target free")).toEqual([`warn client 127.0.0.1:${sourcePort} → backend redis: no target free for ${QUEUE_TIMEOUT} ms`]);
    // The held sessions are untouched.
    for (const client of held.slice(0, 4)) expect(await client.call("PING")).toBe("PONG");
  }, 30_000);

  test("waiting clients are served in arrival order, and one that leaves gives up its turn", async () => {
    await using redis = await startRedises(2);
    await using router = await startRouter(config(redis, { perTarget: [1, 1], queueTimeout: "10s" }));
    const held: RedisClient[] = [];
    await using _ = disposing(held);
    held.push(...(await hold(router, 2)));

    const waiting: RedisClient[] = [];
    const replies: Promise<unknown>[] = [];
    for (let i = 0; i < 3; i++) {
      const client = await RedisClient.connect(router.port);
      waiting.push(client);
      held.push(client);
      replies.push(client.call("PING").catch((error: Error) => error));
      await waitFor(() => router.stats().activeSessions === 3 + i, 5000, `waiting client #${i} to open`);
    }
    // The first in line leaves before its turn (a reset: after a FIN alone the session would
    // rightly wait on, to deliver the reply to a half-closed client).
    await waiting[0]!.reset();
    await waitFor(() => router.stats().activeSessions === 4, 5000, "the first waiting client to leave");

    await held[0]!.close();
    expect(await replies[1]).toBe("PONG"); // the second in line, not the third
    await waitFor(() => router.stats().activeSessions === 3, 5000, "the held session to close");
    expect(waiting[2]!.bytesIn).toBe(0);

    await held[1]!.close();
    expect(await replies[2]).toBe("PONG");
    expect(router.stats().noTarget).toBe(0);
  }, 30_000);

  // Regression: waiting sessions were woken only by `Backend.release()`, never when a health
  // check marked a target up, so a client waited out its whole queue_timeout. The health
  // checker now calls the backend's `wake()` on every transition to up.
  test("a waiting client is served as soon as a down target comes back up", async () => {
    await using redis = await startRedises(2);
    const [a, b] = [redis[0]!, redis[1]!];
    const toml = config(redis, { perTarget: [1, 1], queueTimeout: "3s" }) + '\n[backends.redis.health]\ninterval = "100ms"\nfall = 1\nrise = 1\n';
    await using router = await startRouter(toml);
    await b.kill();
    await waitFor(() => !router.target(b.port).healthy, 5000, "b to be marked down");
    const held: RedisClient[] = [];
    await using _ = disposing(held);
    held.push(...(await hold(router, 1))); // on a, which is now full
    const waiting = await RedisClient.connect(router.port);
    held.push(waiting);
    const reply = waiting.call("PING");
    await waitFor(() => router.stats().activeSessions === 2, 5000, "the client to wait");

    await using bAgain = await startRedisOn(b.port);
    await waitFor(() => router.target(bAgain.port).healthy, 5000, "b to be marked up");
    const upAt = Date.now();
    expect(await reply).toBe("PONG");
    expect(Date.now() - upAt).toBeLessThan(500); // not at the queue deadline, ~3 s after it came
    expect(router.target(a.port).active + router.target(b.port).active).toBe(2);
  }, 30_000);

  test('with queue_timeout = "off", a client that finds every target full is closed at once', async () => {
    await using redis = await startRedises(2);
    await using router = await startRouter(config(redis, { perTarget: [1, 1], queueTimeout: "off" }));
    const held: RedisClient[] = [];
    await using _ = disposing(held);
    held.push(...(await hold(router, 2)));
    const started = Date.now();
    const third = await RedisClient.connect(router.port);
    held.push(third);
    await expect(third.call("PING")).rejects.toThrow("connection closed");
    expect(Date.now() - started).toBeLessThan(400);
    expect(router.stats()).toMatchObject({ noTarget: 1, activeSessions: 2 });
    expect(router.matching("no target available")).toHaveLength(1);
  }, 30_000);
});

describe.skipIf(!hasRedis)("max_connections per listener", () => {
  test("refuses connections over the limit at once, counts them, and dials no target for them", async () => {
    await using redis = await startRedises(2);
    await using router = await startRouter(config(redis, { perTarget: [0, 0], listenerMax: 3 }));
    await using counters = await connectionCounters(redis);
    const held: RedisClient[] = [];
    await using _ = disposing(held);
    held.push(...(await hold(router, 3)));
    await counters.mark();

    for (let i = 0; i < 2; i++) {
      const extra = await RedisClient.connect(router.port);
      held.push(extra);
      await expect(extra.call("PING")).rejects.toThrow("connection closed");
      expect(extra.bytesIn).toBe(0);
    }
    expect(router.stats()).toMatchObject({ refused: 2, activeSessions: 3, totalSessions: 3, noTarget: 0 });
    expect(await counters.connectionsSince()).toEqual([0, 0]);
    // Logged once (at most once a second), not once per refused connection.
    expect(router.matching("refusing connections")).toEqual(["warn listener redis: max_connections 3 reached, refusing connections"]);

    await held[0]!.close();
    await waitFor(() => router.stats().activeSessions === 2, 5000, "a held session to close");
    expect(await whichServer(router.port)).toBeGreaterThan(0);
    expect(router.stats().refused).toBe(2);
  }, 30_000);
});
