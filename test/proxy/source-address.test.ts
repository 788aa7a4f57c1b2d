/**
 * A backend's or a target's `source`: upstream connections are made from that local address,
 * and a source that is not an address of this machine fails the connect with a clear detail.
 */
import { expect, test } from "bun:test";
import { dial, echo, HOST, listen, waitFor } from "../helpers/net.ts";
import { startRouter } from "../helpers/router.ts";

/** A server on 127.0.0.1 that keeps the address each connection came from. */
function recordingServer() {
  const seen: string[] = [];
  const server = Bun.listen({
    hostname: HOST,
    port: 0,
    socket: {
      open(socket) {
        seen.push(socket.remoteAddress);
        socket.end();
      },
      data() {},
      error() {},
    },
  });
  return {
    seen,
    port: server.port,
    [Symbol.dispose]: () => server.stop(true),
  };
}

test("the target sees the backend's source as the connection's remote address", async () => {
  using target = recordingServer();
  await using router = await startRouter(
    `[[listeners]]\nlisten = "${HOST}:0"\nbackend = "b"\n[backends.b]\nsource = "127.0.0.2"\ntargets = ["${HOST}:${target.port}"]\n`,
  );
  await using client = await dial(router.port);
  await waitFor(() => target.seen.length === 1, 5000, "the upstream connection");
  expect(target.seen).toEqual(["127.0.0.2"]);
  await waitFor(() => client.hungUp, 5000, "the session to end");
});

test("a target's own source wins over the backend's", async () => {
  using target = recordingServer();
  await using router = await startRouter(
    `[[listeners]]\nlisten = "${HOST}:0"\nbackend = "b"\n[backends.b]\nsource = "127.0.0.2"\ntargets = [{ address = "${HOST}:${target.port}", source = "127.0.0.3" }]\n`,
  );
  await using _client = await dial(router.port);
  await waitFor(() => target.seen.length === 1, 5000, "the upstream connection");
  expect(target.seen).toEqual(["127.0.0.3"]);
});

test("a source that is not an address of this machine closes the session connect_failed, saying so", async () => {
  await using upstream = listen(echo);
  await using router = await startRouter(
    `[[listeners]]\nlisten = "${HOST}:0"\nbackend = "b"\n[backends.b]\nretries = 0\nsource = "192.0.2.1"\ntargets = ["${upstream.address}"]\n`,
  );
  await using client = await dial(router.port);
  await waitFor(() => client.hungUp, 5000, "the client to be closed");
  expect(upstream.peers.length).toBe(0);
  const line = router.matching("192.0.2.1").join("\n");
  expect(line).toContain("EADDRNOTAVAIL (source 192.0.2.1 is not an address of this machine)");
  expect(router.stats().connectFailures).toBe(1);
});
