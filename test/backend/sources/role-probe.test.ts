/**
 * The ROLE probe of a replica being promoted, against a real redis-server.
 *
 * Regression: the probe was sent without AUTH, so with `requirepass` on the nodes it got
 * NOAUTH and the early switch on `+selected-slave` never happened (a documented known limit).
 * It now sends AUTH first with the backend's check credentials (`health.auth`), else the
 * sentinels' (`sentinel.auth`), and skips the AUTH reply whatever it is: a node without a
 * password answers AUTH with an error and ROLE all the same.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { nodeHelloOf } from "../../../src/backend/sources/sentinel.ts";
import { askRole } from "../../../src/backend/sources/sentinel-links.ts";
import type { BackendConfig } from "../../../src/config/types.ts";
import { authCommand } from "../../../src/protocol/resp.ts";
import { Secret } from "../../../src/util/secret.ts";
import { freePort } from "../../helpers/net.ts";
import { hasRedis, once, type RedisServer, startRedisOn } from "../../helpers/redis.ts";

const PASSWORD = "s3cret-role";
const tcp = (port: number) => ({ kind: "tcp", host: "127.0.0.1", port }) as const;

describe.skipIf(!hasRedis)("askRole against redis-server", () => {
  let open: RedisServer;
  let primary: RedisServer;
  let replica: RedisServer;
  beforeAll(async () => {
    open = await startRedisOn(freePort());
    primary = await startRedisOn(freePort());
    replica = await startRedisOn(freePort());
    await once(primary.port, ["CONFIG", "SET", "requirepass", PASSWORD]);
    await once(replica.port, ["CONFIG", "SET", "masterauth", PASSWORD]);
    await once(replica.port, ["REPLICAOF", "127.0.0.1", String(primary.port)]);
    await once(replica.port, ["CONFIG", "SET", "requirepass", PASSWORD]);
  }, 30_000);
  afterAll(async () => {
    for (const server of [open, primary, replica]) await server?.kill();
  });

  test("a password-protected primary answers master only after AUTH", async () => {
    expect(await askRole(tcp(primary.port), 1000)).toBe(false);
    expect(await askRole(tcp(primary.port), 1000, authCommand(null, PASSWORD))).toBe(true);
    expect(await askRole(tcp(primary.port), 1000, authCommand(null, "wrong"))).toBe(false);
  });

  test("a replica is not master, with or without AUTH", async () => {
    expect(await askRole(tcp(replica.port), 1000, authCommand(null, PASSWORD))).toBe(false);
  });

  test("a node without a password answers ROLE after a refused AUTH", async () => {
    expect(await askRole(tcp(open.port), 1000, authCommand(null, PASSWORD))).toBe(true);
    expect(await askRole(tcp(open.port), 1000)).toBe(true);
  });
});

describe("nodeHelloOf", () => {
  const auth = (password: string, username: string | null = null) => ({ username, password: new Secret(password, "env X") });
  const backend = (health: string | null, sentinel: string | null) =>
    ({
      health: health === null ? null : { auth: auth(health) },
      sentinel: { master: "m", sentinels: [], pollInterval: 1000, timeout: 1000, auth: sentinel === null ? null : auth(sentinel) },
    }) as unknown as BackendConfig;

  test("the check credentials first, else the sentinels', else none", () => {
    expect(nodeHelloOf(backend("node", "sentinel"))).toEqual(authCommand(null, "node"));
    expect(nodeHelloOf(backend(null, "sentinel"))).toEqual(authCommand(null, "sentinel"));
    expect(nodeHelloOf(backend(null, null))).toBeNull();
  });
});
