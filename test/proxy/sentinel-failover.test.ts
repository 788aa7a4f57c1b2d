/**
 * Real Redis replication under real Redis Sentinel (1 primary, 2 replicas, 3 sentinels, a
 * failover in ~1–3 s), behind two routers at once: one with the Sentinel target source, one
 * with role checks on every node (polling, on_down = "close-sessions"). Under a write loop
 * (a fresh connection per write, and one kept connection) through each, `SENTINEL FAILOVER`
 * and a SIGKILL of the primary: no write is answered READONLY once the router switched, and
 * the kept connection is closed on the Sentinel event (or within fall × interval of the
 * demotion with checks). Issue 13.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { waitFor } from "../helpers/net.ts";
import { once, RedisClient } from "../helpers/redis.ts";
import { hasSentinel, roleOf, startReplication, startSentinels, type Replication, type Sentinels } from "../helpers/replication.ts";
import { startRouter, type RouterUnderTest } from "../helpers/router.ts";
import { statusOf } from "../../src/backend/sources/source.ts";

if (!hasSentinel) console.warn("sentinel-failover.test.ts: redis-server, redis-cli or redis-sentinel not found, skipped");

const INTERVAL = 100;
const FALL = 2;

function sentinelRouter(sentinels: Sentinels): string {
  return `[[listeners]]
listen = "127.0.0.1:0"
backend = "redis"
[backends.redis]
sentinel = { master = "mymaster", sentinels = [${sentinels.ports.map((p) => `"127.0.0.1:${p}"`).join(", ")}], poll_interval = "500ms" }
`;
}

function checkRouter(replication: Replication): string {
  return `[[listeners]]
listen = "127.0.0.1:0"
backend = "redis"
[backends.redis]
targets = [${replication.nodes.map((node) => `"127.0.0.1:${node.port}"`).join(", ")}]
[backends.redis.health]
interval = "${INTERVAL}ms"
timeout = "${INTERVAL}ms"
rise = 1
fall = ${FALL}
init = "down"
on_down = "close-sessions"
steps = [{ send = "INFO replication\\r\\n" }, { expect_contains = "role:master" }]
`;
}

interface Write {
  at: number;
  /** "OK", an error reply's text (READONLY …), or "failed" (no connection or closed). */
  reply: string;
  /** The node that took it (CONFIG GET port), 0 when unknown. */
  node: number;
}

/** Writes through `port` on a fresh connection each time until `stop()`; keeps every result. */
function writeLoop(port: number) {
  const writes: Write[] = [];
  let running = true;
  const done = (async () => {
    for (let i = 0; running && i < 100_000; i++) {
      const at = Date.now();
      try {
        await using client = await RedisClient.connect(port);
        const reply = await client.call("SET", `fresh-${i}`, String(i));
        const node = reply === "OK" ? await client.serverPort() : 0;
        writes.push({ at, reply: reply instanceof Error ? reply.message : String(reply), node });
      } catch {
        writes.push({ at, reply: "failed", node: 0 });
        await Bun.sleep(10);
      }
    }
  })();
  return {
    writes,
    async stop() {
      running = false;
      await done;
    },
  };
}

/** A kept connection writing every 20 ms until it is closed; `closedAt` is when it noticed. */
async function keptWriter(port: number) {
  const client = await RedisClient.connect(port);
  const state = { replies: [] as string[], closedAt: 0 };
  const done = (async () => {
    for (let i = 0; i < 100_000; i++) {
      try {
        const reply = await client.call("SET", "kept", String(i));
        state.replies.push(reply instanceof Error ? reply.message : String(reply));
      } catch {
        state.closedAt = Date.now();
        return;
      }
      await Bun.sleep(20);
    }
  })();
  return Object.assign(state, { client, done });
}

/** The time the router logged its switch to `to`: the first write after it must not be READONLY. */
function switchedAt(router: RouterUnderTest, to: number): Promise<number> {
  return waitFor(() => router.matching(`to 127.0.0.1:${to} (`).length > 0, 15_000, `the router to switch to ${to}`).then(() => Date.now());
}

describe.skipIf(!hasSentinel)("following the primary under Redis Sentinel", () => {
  let replication: Replication;
  let sentinels: Sentinels;
  beforeAll(async () => {
    replication = await startReplication(2);
    sentinels = await startSentinels(3, replication.primary.port, 2, { downAfter: 500, failoverTimeout: 2000 });
  }, 60_000);
  afterAll(async () => {
    await sentinels?.[Symbol.asyncDispose]();
    await replication?.[Symbol.asyncDispose]();
  });

  test("SENTINEL FAILOVER: the Sentinel source switches on the event and closes the kept connection; checks follow within fall × interval", async () => {
    const old = (await sentinels.masterPort())!;
    await using bySentinel = await startRouter(sentinelRouter(sentinels));
    await using byChecks = await startRouter(checkRouter(replication));
    expect(
      bySentinel
        .backends()
        .get("redis")!
        .map((t) => t.key),
    ).toEqual([`127.0.0.1:${old}`]);
    await waitFor(() => byChecks.target(old).healthy, 3000, "the check router to find the primary");
    await waitFor(() => statusOf(bySentinel.view.sources, "redis").find((s) => s.kind === "sentinel")?.fields.subscribed === 3, 3000, "three subscriptions");
    for (const router of [bySentinel, byChecks]) {
      await using client = await RedisClient.connect(router.port);
      expect(await client.serverPort()).toBe(old);
    }

    const loops = [writeLoop(bySentinel.port), writeLoop(byChecks.port)];
    const kept = [await keptWriter(bySentinel.port), await keptWriter(byChecks.port)];
    await Bun.sleep(200);
    // The old primary's demotion, as a client would see it (ROLE polled every 20 ms).
    let demotedAt = 0;
    const watchRole = (async () => {
      for (let i = 0; i < 1000 && demotedAt === 0; i++) {
        if ((await roleOf(old)) === "slave") demotedAt = Date.now();
        else await Bun.sleep(20);
      }
    })();
    expect(await once(sentinels.ports[0]!, ["SENTINEL", "FAILOVER", "mymaster"])).toBe("OK");
    await waitFor(async () => (await sentinels.masterPort()) !== old, 15_000, "the sentinels to name a new primary");
    const next = (await sentinels.masterPort())!;
    const switched = await switchedAt(bySentinel, next);
    await watchRole;
    await waitFor(() => kept.every((k) => k.closedAt > 0), 10_000, "both kept connections to be closed");
    await waitFor(() => byChecks.target(next).healthy, 5000, "the check router to find the new primary");
    await Bun.sleep(300);
    for (const loop of loops) await loop.stop();

    // The Sentinel source: the kept connection is closed on the event, and no write after the switch reaches another node.
    expect(kept[0]!.closedAt - switched).toBeLessThan(500);
    const afterSwitch = loops[0]!.writes.filter((w) => w.at > switched + 50);
    expect(afterSwitch.length).toBeGreaterThan(3);
    expect(afterSwitch.filter((w) => w.reply !== "OK" || w.node !== next)).toEqual([]);
    expect(bySentinel.matching(`on 127.0.0.1:${old}: 127.0.0.1:${old} is no longer the primary of mymaster`)).toHaveLength(1);
    console.log(
      `SENTINEL FAILOVER: kept connection closed ${kept[0]!.closedAt - switched} ms after the Sentinel source switched; ` +
        `${kept[1]!.closedAt - demotedAt} ms after the demotion with role checks`,
    );

    // Role checks: the kept connection leaves within fall × interval (+ one check's timeout and slack) of the demotion.
    expect(demotedAt).toBeGreaterThan(0);
    expect(kept[1]!.closedAt - demotedAt).toBeLessThan((FALL + 1) * INTERVAL + 400);
    const settled = demotedAt + (FALL + 1) * INTERVAL + 400;
    expect(loops[1]!.writes.filter((w) => w.at > settled && w.reply.startsWith("READONLY"))).toEqual([]);
    for (const k of kept) expect(k.replies.filter((r) => r.startsWith("READONLY"))).toEqual([]);
  }, 60_000);

  test("SIGKILL of the primary: the Sentinel source moves once the sentinels fail over, and never back to the old node when it returns claiming role:master", async () => {
    const oldPort = (await sentinels.masterPort())!;
    const old = replication.nodes.find((node) => node.port === oldPort)!;
    await using bySentinel = await startRouter(sentinelRouter(sentinels));
    await using byChecks = await startRouter(checkRouter(replication));
    await waitFor(() => statusOf(bySentinel.view.sources, "redis").find((s) => s.kind === "sentinel")?.fields.subscribed === 3, 3000, "three subscriptions");
    await waitFor(() => byChecks.target(oldPort).healthy, 3000, "the check router to find the primary");
    const loop = writeLoop(bySentinel.port);
    const checksLoop = writeLoop(byChecks.port);
    const kept = await keptWriter(bySentinel.port);
    const checksKept = await keptWriter(byChecks.port);
    await Bun.sleep(200);
    const killedAt = Date.now();
    await old.kill();
    await kept.done;
    await checksKept.done;
    expect(kept.closedAt - killedAt).toBeLessThan(500); // the upstream's reset closes it at once
    expect(checksKept.closedAt - killedAt).toBeLessThan(500);
    await waitFor(async () => ![null, oldPort].includes(await sentinels.masterPort()), 20_000, "the sentinels to fail over");
    const next = (await sentinels.masterPort())!;
    const switched = await switchedAt(bySentinel, next);
    await waitFor(() => byChecks.target(next).healthy, 5000, "the check router to find the new primary");
    const checksSettled = Date.now() + (FALL + 1) * INTERVAL;
    // The killed node comes back believing it is the primary, until Sentinel demotes it.
    await old.restart();
    await Bun.sleep(1500);
    await loop.stop();
    await checksLoop.stop();
    // Role checks: once they found the new primary, no write is answered READONLY (the returned
    // node may still take some as a second role:master: the reason for the Sentinel source).
    expect(checksLoop.writes.filter((w) => w.at > checksSettled && w.reply.startsWith("READONLY"))).toEqual([]);
    const afterSwitch = loop.writes.filter((w) => w.at > switched + 50);
    expect(afterSwitch.length).toBeGreaterThan(3);
    expect(afterSwitch.filter((w) => w.reply !== "OK" || w.node !== next)).toEqual([]);
    const lastBad = loop.writes.findLastIndex((w) => w.reply !== "OK" || w.node !== next);
    console.log(`sentinel source: outage after SIGKILL ${(loop.writes[lastBad + 1]?.at ?? Number.NaN) - killedAt} ms (fresh connections)`);
    await waitFor(async () => (await roleOf(oldPort)) === "slave", 15_000, "Sentinel to demote the returned node");
  }, 60_000);
});
