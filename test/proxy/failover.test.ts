/**
 * Following the primary with health checks alone, against real Redis replication: a check that
 * tells a primary from a replica (AUTH, INFO replication, role:master), init = "down" so only
 * the primary carries sessions, and on_down = "close-sessions" so a kept connection leaves a
 * demoted node instead of getting -READONLY for as long as it runs (issue 13).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { waitFor } from "../helpers/net.ts";
import { RedisClient } from "../helpers/redis.ts";
import { hasSentinel, startReplication, type Replication } from "../helpers/replication.ts";
import { startRouter } from "../helpers/router.ts";

const PASSWORD = "failover-test-pw";
const hasRedis = ["redis-server", "redis-cli"].every((name) => Bun.which(name) !== null);
if (!hasRedis) console.warn("failover.test.ts: redis-server or redis-cli not found, skipped");
void hasSentinel;

const INTERVAL = 100;
const FALL = 2;

function config(nodes: Replication["nodes"]): string {
  return `[[listeners]]
listen = "127.0.0.1:0"
backend = "redis"
[backends.redis]
targets = [${nodes.map((node) => `"127.0.0.1:${node.port}"`).join(", ")}]
[backends.redis.health]
interval = "${INTERVAL}ms"
timeout = "${INTERVAL}ms"
rise = 1
fall = ${FALL}
init = "down"
on_down = "close-sessions"
auth = { password_env = "TCPROUTER_FAILOVER_PW" }
steps = [{ send = "INFO replication\\r\\n" }, { expect_contains = "role:master" }]
`;
}

async function authed(port: number): Promise<RedisClient> {
  const client = await RedisClient.connect(port);
  const reply = await client.call("AUTH", PASSWORD);
  if (reply !== "OK") throw new Error(`AUTH replied ${String(reply)}`);
  return client;
}

/** One write on a fresh connection: "OK", or the error text (READONLY …), or "closed". */
async function freshWrite(port: number, key: string): Promise<string> {
  try {
    await using client = await authed(port);
    const reply = await client.call("SET", key, "1");
    return reply instanceof Error ? reply.message : String(reply);
  } catch {
    return "closed";
  }
}

describe.skipIf(!hasRedis)("health checks that follow the primary (real replication)", () => {
  let replication: Replication;
  beforeAll(async () => {
    replication = await startReplication(2, { password: PASSWORD });
    process.env.TCPROUTER_FAILOVER_PW = PASSWORD;
  }, 30_000);
  afterAll(async () => {
    await replication?.[Symbol.asyncDispose]();
    delete process.env.TCPROUTER_FAILOVER_PW;
  });

  test("routes only to the primary, and closes a kept connection once its node is demoted", async () => {
    const [primary, first, second] = replication.nodes as [typeof replication.primary, typeof replication.primary, typeof replication.primary];
    await using router = await startRouter(config(replication.nodes));
    // init = "down": replicas never carry a session, even before their first check.
    await waitFor(() => router.target(primary.port).healthy, 3000, "the primary to pass its check");
    expect(router.target(first.port).healthy).toBe(false);
    expect(router.target(second.port).healthy).toBe(false);
    for (let i = 0; i < 10; i++) {
      await using client = await authed(router.port);
      expect(await client.serverPort()).toBe(primary.port);
    }

    await using kept = await authed(router.port);
    expect(await kept.call("SET", "kept", "1")).toBe("OK");

    // A manual failover: the first replica becomes the primary, the old one its replica.
    await using promote = await authed(first.port);
    expect(await promote.call("REPLICAOF", "NO", "ONE")).toBe("OK");
    await using demote = await authed(primary.port);
    expect(await demote.call("REPLICAOF", "127.0.0.1", String(first.port))).toBe("OK");
    await using follow = await authed(second.port);
    expect(await follow.call("REPLICAOF", "127.0.0.1", String(first.port))).toBe("OK");
    const switched = Date.now();

    // The kept connection is closed within fall × interval (plus a check's timeout and slack).
    await kept.whenClosed;
    const closedAfter = Date.now() - switched;
    expect(closedAfter).toBeLessThan((FALL + 2) * INTERVAL + 500);
    expect(router.matching(`closed 1 session on 127.0.0.1:${primary.port}: 127.0.0.1:${primary.port} marked down`)).toHaveLength(1);
    expect(router.view.stats().targetDown).toBe(1);

    // Once the switch settled, no write is answered READONLY.
    await waitFor(() => router.target(first.port).healthy && !router.target(primary.port).healthy, 3000, "the checks to follow the switch");
    const replies = new Set<string>();
    for (let i = 0; i < 20; i++) replies.add(await freshWrite(router.port, `fresh-${i}`));
    expect([...replies]).toEqual(["OK"]);
    await using client = await authed(router.port);
    expect(await client.serverPort()).toBe(first.port);
    expect(router.lines.join("\n")).not.toContain(PASSWORD);
  }, 30_000);

  test("a wrong password fails the check with the reply, never the password, in the log", async () => {
    process.env.TCPROUTER_FAILOVER_PW = "not-the-password-42";
    try {
      await using router = await startRouter(config(replication.nodes));
      await waitFor(() => router.matching('failed: unexpected reply (expected prefix "+OK")').length > 0, 3000, "a failed AUTH step");
      expect(router.target(replication.nodes[0]!.port).healthy).toBe(false);
      expect(router.lines.join("\n")).not.toContain("not-the-password-42");
    } finally {
      process.env.TCPROUTER_FAILOVER_PW = PASSWORD;
    }
  });
});
