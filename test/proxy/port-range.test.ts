/**
 * Port ranges end to end: a listener on 11 consecutive ports, each port its own listener, and
 * `$port` targets, so each port reaches the server on the same port of another loopback
 * address (127.0.0.2). Each server answers with its own port number, so the bytes tell which
 * one a session reached.
 */
import { expect, test } from "bun:test";
import { dial, HOST, listen, waitFor, type Server } from "../helpers/net.ts";
import { startRouter } from "../helpers/router.ts";

const PORTS = 11;
const UPSTREAM = "127.0.0.2";

/** A server on `host:port` that answers anything with its own port number (port 0: the one it got) and closes. */
function portServer(host: string, port: number): Server {
  return listen(
    {
      data: (peer) => {
        peer.write(String(peer.socket.localPort));
        peer.end();
      },
    },
    { hostname: host, port },
  );
}

/**
 * `PORTS` consecutive ports free on 127.0.0.1 (for the router) with a port server on each of
 * them on 127.0.0.2. Tried at random bases until one range is free on both.
 */
function serversOnFreeRange(): { first: number; servers: Server[] } {
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = 20_000 + Math.floor(Math.random() * 40_000);
    const servers: Server[] = [];
    try {
      for (let port = first; port < first + PORTS; port++) {
        const probe = Bun.listen({ hostname: HOST, port, socket: { data() {} } });
        probe.stop(true);
        servers.push(portServer(UPSTREAM, port));
      }
      return { first, servers };
    } catch {
      for (const server of servers) server.listener.stop(true);
    }
  }
  throw new Error(`no ${PORTS} consecutive free ports found`);
}

/** One session to `port`: sends a byte, returns everything until the server closes. */
async function reply(port: number): Promise<string> {
  const peer = await dial(port);
  peer.write("?");
  await waitFor(() => peer.hungUp, 5000, `the reply through port ${port}`);
  return peer.text();
}

test("each port of a range reaches the target on the port the client dialled ($port)", async () => {
  const { first, servers } = serversOnFreeRange();
  const last = first + PORTS - 1;
  try {
    await using router = await startRouter(
      `[[listeners]]\nlisten = "127.0.0.1:${first}-${last}"\nbackend = "app"\n[backends.app]\ntargets = ["${UPSTREAM}:$port"]\n`,
    );
    expect(router.listeners.map((l) => l.name)).toEqual(servers.map((_, i) => `127.0.0.1:${first + i}`));
    const backends = router.backends();
    expect([...backends.keys()]).toEqual(servers.map((_, i) => `app:${first + i}`));
    expect(backends.get(`app:${first}`)!.map((t) => t.key)).toEqual([`${UPSTREAM}:${first}`]);
    const replies = await Promise.all(servers.map((_, i) => reply(first + i)));
    expect(replies).toEqual(servers.map((_, i) => String(first + i)));
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
});

test("a range without $port sends every port to the same backend", async () => {
  const { first, servers } = serversOnFreeRange();
  const last = first + PORTS - 1;
  try {
    await using one = portServer(HOST, 0);
    await using router = await startRouter(
      `[[listeners]]\nname = "web"\nlisten = "127.0.0.1:${first}-${last}"\nbackend = "one"\n[backends.one]\ntargets = ["${HOST}:${one.port}"]\n`,
    );
    expect(router.listeners.map((l) => l.name)).toEqual(servers.map((_, i) => `web:${first + i}`));
    expect([...router.backends().keys()]).toEqual(["one"]);
    const replies = await Promise.all(servers.map((_, i) => reply(first + i)));
    expect(replies).toEqual(servers.map(() => String(one.port)));
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
});

test("$port on a single listener is that listener's port", async () => {
  const { first, servers } = serversOnFreeRange();
  try {
    await using router = await startRouter(
      `[[listeners]]\nlisten = "127.0.0.1:${first + 3}"\nbackend = "app"\n[backends.app]\ntargets = ["${UPSTREAM}:$port"]\n`,
    );
    expect([...router.backends().keys()]).toEqual([`app:${first + 3}`]);
    expect(await reply(first + 3)).toBe(String(first + 3));
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
});
