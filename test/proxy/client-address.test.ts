/**
 * The client's address costs a getpeername(2), and Bun forgets it once the socket closes. A
 * session reads it at accept only when something will want it after the client may be gone
 * (the debug close line, the access log); otherwise when first asked (a warn line, source-hash,
 * source checks), while the client is still open. The router here logs at info, so the second
 * path is the one taken; the other tests run at debug and take the first.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AccessLog } from "../../src/observe/access-log.ts";
import { Metrics } from "../../src/observe/metrics.ts";
import { hasRedis, RedisClient, startRedisOn, whichServer } from "../helpers/redis.ts";
import { dial, echo, freePort, HOST, listen, waitFor } from "../helpers/net.ts";
import { startRouter } from "../helpers/router.ts";

/** consola's info level: no debug lines, so no session reads its address at accept for them. */
const INFO = 3;

const dir = mkdtempSync(join(tmpdir(), "tcprouter-client-address-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const deadBackend = (dead: number) =>
  `[[listeners]]\nname = "l"\nlisten = "${HOST}:0"\nbackend = "dead"\n[backends.dead]\nretries = 0\ntargets = ["${HOST}:${dead}"]\n`;

test("a warn line names the client's address and port, read while the client is open", async () => {
  const dead = freePort();
  await using router = await startRouter(deadBackend(dead), INFO);
  await using client = await RedisClient.connect(router.port, "127.0.0.7");
  const port = client.socket.localPort;
  await client.whenClosed;
  await waitFor(() => router.matching("ECONNREFUSED").length > 0, 5000, "the warn line");
  expect(router.lines).toEqual([`warn client 127.0.0.7:${port} → dead ${HOST}:${dead}: ECONNREFUSED`]);
});

test("with metrics on (an observer that does not read addresses) the warn line still has them", async () => {
  const dead = freePort();
  await using router = await startRouter(deadBackend(dead), INFO);
  const metrics = new Metrics(router.view).attach();
  try {
    await using client = await RedisClient.connect(router.port, "127.0.0.8");
    const port = client.socket.localPort;
    await client.whenClosed;
    await waitFor(() => router.matching("ECONNREFUSED").length > 0, 5000, "the warn line");
    expect(router.lines).toEqual([`warn client 127.0.0.8:${port} → dead ${HOST}:${dead}: ECONNREFUSED`]);
  } finally {
    metrics.detach();
  }
});

test("the access log has the address of a client that closed first", async () => {
  await using upstream = listen(echo);
  await using router = await startRouter(
    `[[listeners]]\nname = "l"\nlisten = "${HOST}:0"\nbackend = "echo"\n[backends.echo]\ntargets = ["${upstream.address}"]\n`,
    INFO,
  );
  const path = join(dir, "access.log");
  const log = new AccessLog({ to: path, format: "json" });
  router.view.observe(log);
  await using client = await dial(router.port);
  const port = client.socket.localPort;
  client.write("hi");
  await waitFor(() => client.bytesIn === 2, 5000, "the echo");
  client.shutdown();
  await waitFor(() => router.view.sessions.size === 0 && router.stats().totalSessions === 1, 5000, "the session to end");
  log.close();
  const lines = readFileSync(path, "utf8").trim().split("\n");
  expect(lines).toHaveLength(1);
  expect(JSON.parse(lines[0]!)).toMatchObject({ client: `${HOST}:${port}`, reason: "client_fin", bytes_up: 2, bytes_down: 2 });
});

test.skipIf(!hasRedis)("source-hash reads the address at the pick: each source keeps its target, and both targets are used", async () => {
  await using a = await startRedisOn(freePort());
  await using b = await startRedisOn(freePort());
  await using router = await startRouter(
    `[[listeners]]\nname = "l"\nlisten = "${HOST}:0"\nbackend = "redis"\n` +
      `[backends.redis]\nbalance = "source-hash"\ntargets = ["${HOST}:${a.port}", "${HOST}:${b.port}"]\n`,
    INFO,
  );
  const chosen = new Map<string, number>();
  for (let i = 2; i < 22; i++) {
    const source = `127.0.0.${i}`;
    const first = await whichServer(router.port, source);
    for (let again = 0; again < 2; again++) expect(await whichServer(router.port, source)).toBe(first);
    chosen.set(source, first);
  }
  expect(new Set(chosen.values())).toEqual(new Set([a.port, b.port]));
});
