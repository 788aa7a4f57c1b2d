/**
 * A real Patroni cluster (etcd, two PostgreSQL 15 nodes) behind tcprouter with the HTTP check
 * `GET /primary` on Patroni's REST port: sessions reach only the leader, and follow a
 * switchover (issue 13). Skipped where patroni, etcd-server or PostgreSQL 15 are missing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { run, waitFor } from "../helpers/net.ts";
import { hasPatroni, startPatroni, type PatroniCluster } from "../helpers/patroni.ts";
import { startRouter } from "../helpers/router.ts";

const available = hasPatroni();
if (!available) console.warn("patroni.test.ts: patroni, etcd, PostgreSQL 15 or a postgres user (running as root) missing, skipped");

/** The address of the server the router sends a new session to, and whether it is in recovery (a replica). */
async function whoAnswers(port: number): Promise<string> {
  const psql = "/usr/lib/postgresql/15/bin/psql";
  const { stdout, stderr } = await run(
    [psql, "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", "postgres", "-tAc", "select inet_server_addr() || ' ' || pg_is_in_recovery()"],
    10_000,
  );
  return (stdout || stderr).trim();
}

describe.skipIf(!available)("http checks against a real Patroni", () => {
  let cluster: PatroniCluster;
  beforeAll(async () => {
    cluster = await startPatroni();
  }, 150_000);
  afterAll(async () => {
    await cluster?.[Symbol.asyncDispose]();
  }, 30_000);

  test("only the leader carries sessions, and a switchover moves them", async () => {
    const [first, second] = cluster.hosts as [string, string];
    await using router = await startRouter(`[[listeners]]
listen = "127.0.0.1:0"
backend = "pg"
[backends.pg]
targets = ["${first}:${cluster.pgPort}", "${second}:${cluster.pgPort}"]
[backends.pg.health]
type = "http"
port = ${cluster.apiPort}
path = "/primary"
interval = "200ms"
rise = 1
fall = 1
init = "down"
on_down = "close-sessions"
`);
    await waitFor(() => router.backends().get("pg")![0]!.healthy, 5000, "the leader's check to pass");
    expect(router.backends().get("pg")![1]!.healthy).toBe(false);
    expect(await whoAnswers(router.port)).toBe(`${first}/32 false`);

    await cluster.switchover(second);
    await waitFor(async () => (await cluster.leader()) === second, 30_000, "the switchover");
    await waitFor(() => router.backends().get("pg")![1]!.healthy && !router.backends().get("pg")![0]!.healthy, 5000, "the checks to follow");
    await waitFor(async () => (await whoAnswers(router.port)) === `${second}/32 false`, 10_000, "a session on the new leader");
  }, 120_000);
});
