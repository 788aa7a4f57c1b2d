/**
 * HTTP checks against an agent shaped like Patroni's REST API (`GET /primary` is 200 on the
 * leader, 503 on a replica, on its own port), and TCP checks over TLS for TLS backends.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Server as HttpServer } from "bun";
import { echo, listen, waitFor, type Server } from "../../helpers/net.ts";
import { startRouter } from "../../helpers/router.ts";
import { tlsServer } from "../../helpers/tls.ts";

const opened: (Server | HttpServer<undefined>)[] = [];
afterEach(async () => {
  for (const server of opened.splice(0)) await server.stop(true);
});

/** A Patroni-shaped agent on `host`: GET /primary answers 200 while `state.leader`, else 503; other paths 404. */
function patroni(host: string, port: number, state: { leader: boolean }): HttpServer<undefined> {
  const server = Bun.serve({
    hostname: host,
    port,
    fetch(request) {
      const path = new URL(request.url).pathname;
      const role = state.leader ? "primary" : "replica";
      const body = JSON.stringify({ state: "running", role, timeline: 1 });
      if (path === "/primary" || path === "/master") return new Response(body, { status: state.leader ? 200 : 503 });
      if (path === "/replica") return new Response(body, { status: state.leader ? 503 : 200 });
      if (path === "/health") return new Response(body);
      return new Response("not found", { status: 404 });
    },
  });
  opened.push(server);
  return server;
}

/** The same free port on 127.0.0.2 and 127.0.0.3 for `make` (two "hosts", as Patroni runs its agent on one port on every node). Bounded retries. */
function onBothHosts<T>(make: (host: string, port: number) => T): [T, T] {
  for (let attempt = 0; attempt < 20; attempt++) {
    const first = make("127.0.0.2", 0) as T & { port: number };
    try {
      return [first, make("127.0.0.3", first.port)];
    } catch {
      // taken on the second host: try another port
    }
  }
  throw new Error("no port free on both 127.0.0.2 and 127.0.0.3");
}

describe("http checks (Patroni's GET /primary)", () => {
  test("only the node whose agent answers 200 carries sessions, and a switch of leader moves them", async () => {
    const roles = [{ leader: true }, { leader: false }];
    let i = 0;
    const agents = onBothHosts((host, port) => patroni(host, port, roles[i++ % 2]!));
    const databases = onBothHosts((host, port) => {
      const server = listen(echo, { hostname: host, port });
      opened.push(server);
      return server;
    });
    await using router = await startRouter(`[[listeners]]
listen = "127.0.0.1:0"
backend = "pg"
[backends.pg]
targets = ["127.0.0.2:${databases[0].port}", "127.0.0.3:${databases[0].port}"]
[backends.pg.health]
type = "http"
port = ${agents[0].port}
path = "/primary"
body = "running"
interval = "100ms"
rise = 1
fall = 1
init = "down"
on_down = "close-sessions"
`);
    const [leader, replica] = router.backends().get("pg")!;
    await waitFor(() => leader!.healthy, 3000, "the leader's agent to answer 200");
    await Bun.sleep(250);
    expect(replica!.healthy).toBe(false);
    expect(router.matching("503 (expected 200)").length).toBeGreaterThan(0);

    roles[0]!.leader = false;
    roles[1]!.leader = true;
    await waitFor(() => replica!.healthy && !leader!.healthy, 3000, "the checks to follow the new leader");
  });
});

describe("checks over TLS", () => {
  test("a TLS backend's checks run over TLS with its CA and server name; a wrong CA marks it down", async () => {
    await using server = await tlsServer("db");
    const config = (ca: string) => `[[listeners]]
listen = "127.0.0.1:0"
backend = "db"
[backends.db]
targets = ["127.0.0.1:${server.port}"]
tls = { servername = "db.example.com", ca = "${ca}" }
[backends.db.health]
interval = "100ms"
rise = 1
fall = 1
init = "down"
steps = [{ expect = "db sni=db.example.com" }]
`;
    {
      await using router = await startRouter(config("fixtures/tls/certs/ca.pem"));
      await waitFor(() => router.target(server.port, "db").healthy, 3000, "the TLS check to pass");
    }
    {
      await using router = await startRouter(config("fixtures/tls/certs/other-ca.pem"));
      await waitFor(() => router.matching("TLS:").length > 0, 3000, "a failed TLS check");
      expect(router.target(server.port, "db").healthy).toBe(false);
    }
  });
});
