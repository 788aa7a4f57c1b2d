/**
 * Source ACLs and per-source limits (issue 5): listener `allow` / `deny` CIDR lists over IPv4
 * and IPv6, `max_connections_per_ip` and `connection_rate_per_ip`. A connection turned away is
 * closed before any upstream is dialled (the backend sees no connection) and counted.
 *
 * Clients take other loopback source addresses (127.0.0.2, 127.0.0.3) with node:net's
 * `localAddress`; the IPv6 cases use ::1 and are skipped, visibly, without it.
 */
import { describe, expect, test } from "bun:test";
import { echo, hasIPv6Loopback, listen, waitFor, type Server } from "../helpers/net.ts";
import { dialFrom, type NetClient } from "../helpers/tls.ts";
import { type RouterUnderTest, startRouter } from "../helpers/router.ts";

const ipv6 = await hasIPv6Loopback();

/** A router with one listener on `listen` (with `extra` keys) in front of an echo server. */
async function guarded(extra: string, listenOn = "127.0.0.1:0", backendHost = "127.0.0.1") {
  const app = listen(echo, { hostname: backendHost });
  const target = backendHost.includes(":") ? `[${backendHost}]:${app.port}` : `${backendHost}:${app.port}`;
  const router = await startRouter(`
[[listeners]]
name = "guarded"
listen = "${listenOn}"
backend = "app"
${extra}
[backends.app]
targets = ["${target}"]
`);
  return {
    app,
    router,
    async [Symbol.asyncDispose]() {
      await router[Symbol.asyncDispose]();
      await app.stop();
    },
  };
}

/** The client gets its bytes echoed: it was let in and dialled. */
async function admitted(client: NetClient): Promise<void> {
  await client.write("ping\n");
  await waitFor(() => client.text() === "ping\n", 5000, "the echo");
}

/** The client is closed without a byte, and the backend's connection count has not moved. */
async function turnedAway(client: NetClient, app: Server, dialled: number): Promise<void> {
  await client.write("ping\n").catch(() => {});
  await client.closedWithin();
  expect(client.text()).toBe("");
  expect(app.peers).toHaveLength(dialled);
}

function denied(router: RouterUnderTest): [number, number] {
  return [router.view.stats().denied, router.view.listeners[0]!.denied];
}

describe("allow and deny (IPv4)", () => {
  test("allow: a source in none of the ranges is closed before any dial, counted, and logged", async () => {
    await using rig = await guarded('allow = ["127.0.0.2/32", "10.0.0.0/8"]');
    await using outsider = await dialFrom(rig.router.port, "127.0.0.1");
    await turnedAway(outsider, rig.app, 0);
    await using insider = await dialFrom(rig.router.port, "127.0.0.2");
    await admitted(insider);
    expect(rig.app.peers).toHaveLength(1);
    expect(denied(rig.router)).toEqual([1, 1]);
    expect(rig.router.matching("warn listener guarded: client 127.0.0.1:")).toHaveLength(1);
  });

  test("deny wins over allow", async () => {
    await using rig = await guarded('allow = ["127.0.0.0/8"]\ndeny = ["127.0.0.3"]');
    await using denied3 = await dialFrom(rig.router.port, "127.0.0.3");
    await turnedAway(denied3, rig.app, 0);
    await using allowed = await dialFrom(rig.router.port, "127.0.0.2");
    await admitted(allowed);
    expect(denied(rig.router)).toEqual([1, 1]);
  });

  test("deny alone lets everyone else in", async () => {
    await using rig = await guarded('deny = ["127.0.0.2/31"]'); // 127.0.0.2 and 127.0.0.3
    for (const source of ["127.0.0.2", "127.0.0.3"]) {
      await using client = await dialFrom(rig.router.port, source);
      await turnedAway(client, rig.app, 0);
    }
    await using other = await dialFrom(rig.router.port, "127.0.0.4");
    await admitted(other);
    expect(denied(rig.router)).toEqual([2, 2]);
  });

  test("an IPv6 range does not match an IPv4 client", async () => {
    await using rig = await guarded('allow = ["::/0"]');
    await using client = await dialFrom(rig.router.port, "127.0.0.1");
    await turnedAway(client, rig.app, 0);
  });
});

describe.skipIf(!ipv6)("allow and deny (IPv6, ::1)", () => {
  test("deny ::1/128 closes an IPv6 client; allow ::1 lets it in", async () => {
    {
      await using rig = await guarded('deny = ["::1/128"]', "[::1]:0", "::1");
      await using client = await dialFrom(rig.router.port, "::1");
      await turnedAway(client, rig.app, 0);
      expect(denied(rig.router)).toEqual([1, 1]);
    }
    {
      await using rig = await guarded('allow = ["::1"]', "[::1]:0", "::1");
      await using client = await dialFrom(rig.router.port, "::1");
      await admitted(client);
    }
  });

  test("an IPv4 range does not match an IPv6 client", async () => {
    await using rig = await guarded('allow = ["127.0.0.0/8"]', "[::1]:0", "::1");
    await using client = await dialFrom(rig.router.port, "::1");
    await turnedAway(client, rig.app, 0);
  });
});

describe("per-source limits", () => {
  test("max_connections_per_ip: a third session from one address is closed; other addresses and freed places are not", async () => {
    await using rig = await guarded("max_connections_per_ip = 2");
    const port = rig.router.port;
    await using first = await dialFrom(port, "127.0.0.1");
    await using second = await dialFrom(port, "127.0.0.1");
    await admitted(first);
    await admitted(second);
    await using third = await dialFrom(port, "127.0.0.1");
    await turnedAway(third, rig.app, 2);
    await using elsewhere = await dialFrom(port, "127.0.0.2");
    await admitted(elsewhere);
    first.socket.destroy();
    await waitFor(() => rig.router.view.sessions.size === 2, 5000, "the first session to end");
    await using again = await dialFrom(port, "127.0.0.1");
    await admitted(again);
    expect(denied(rig.router)).toEqual([1, 1]);
  });

  test("connection_rate_per_ip: connections past the rate within a second are closed; other addresses and the next second are not", async () => {
    await using rig = await guarded("connection_rate_per_ip = 3");
    const port = rig.router.port;
    // Start just after a second boundary of this process's clock (the router runs in it), so
    // the burst below falls within one second whatever window the limiter counts in.
    await waitFor(() => performance.now() % 1000 < 100, 2000, "the start of a second");
    const burst = await Promise.all(Array.from({ length: 5 }, () => dialFrom(port, "127.0.0.1")));
    await using elsewhere = await dialFrom(port, "127.0.0.2");
    try {
      await Promise.all(burst.map((client) => client.write("ping\n").catch(() => {})));
      await waitFor(
        () => burst.filter((client) => client.closed).length === 2 && burst.filter((client) => client.text() === "ping\n").length === 3,
        5000,
        "3 echoes and 2 closes",
      );
      await admitted(elsewhere);
      expect(rig.app.peers).toHaveLength(4);
      await Bun.sleep(1100);
      await using later = await dialFrom(port, "127.0.0.1");
      await admitted(later);
      expect(denied(rig.router)).toEqual([2, 2]);
    } finally {
      for (const client of burst) await client[Symbol.asyncDispose]();
    }
  });
});
