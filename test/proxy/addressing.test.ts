/** Listeners and targets on every address form: unix sockets and IPv6 loopback. */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dial, echo, freePort, hasIPv6Loopback, listen, waitFor } from "../helpers/net.ts";
import { startForward } from "../helpers/router.ts";

const dirs: string[] = [];
function socketPath(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), "tcprouter-test-"));
  dirs.push(dir);
  return join(dir, name);
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

// Regression: a client accepted on a unix listener has `remoteAddress === undefined`, and
// naming it with formatHostPort() threw "TypeError: undefined is not an object (evaluating
// 'host.includes')" wherever a session logged its client: the debug close line (this test's
// logger is at debug) and the connect-failure warning (next test). The session now keeps ""
// for a unix client and clientAddress() calls it "unix" without formatting a host:port.
test("listens on a unix socket and forwards to a TCP target", async () => {
  const path = socketPath("listen.sock");
  await using upstream = listen(echo);
  await using fwd = await startForward({ listen: `unix:${path}`, to: upstream.address });
  expect(fwd.address).toBe(`unix:${path}`);
  expect(fwd.port).toBe(0);

  await using client = await dial({ unix: path });
  client.write("over a unix socket");
  await waitFor(() => client.bytesIn === 18, 5000, "the echo");
  expect(client.text()).toBe("over a unix socket");
  client.shutdown();
  await waitFor(() => client.closed && fwd.stats().activeSessions === 0, 5000, "the session to close");
  expect(fwd.matching("session ")).toHaveLength(1); // the debug line for the closed session
}, 15_000);

// Regression, same bug on the warn path that every log level reaches: the connect-failure
// warning threw inside Bun's connectError handler, so the session was counted as a connect
// failure but never closed, and the client hung until stop().
test("closes a unix-socket client when the target refuses, and counts it", async () => {
  const path = socketPath("listen.sock");
  await using fwd = await startForward({ listen: `unix:${path}`, to: `127.0.0.1:${freePort()}` });
  await using client = await dial({ unix: path });
  await waitFor(() => client.hungUp, 5000, "the client to be closed");
  expect(fwd.stats()).toMatchObject({ connectFailures: 1, activeSessions: 0 });
  expect(fwd.matching("ECONNREFUSED").filter((line) => line.startsWith("warn"))).toHaveLength(1);
}, 15_000);

test("forwards from TCP to a unix socket target, half-close included", async () => {
  const path = socketPath("target.sock");
  await using _upstream = listen(echo, { unix: path });
  await using fwd = await startForward({ to: `unix:${path}` });
  await using client = await dial(fwd.port);

  client.write("to a unix target");
  client.shutdown();
  await waitFor(() => client.ended, 5000, "the echo and the FIN");
  expect(client.text()).toBe("to a unix target");
  await waitFor(() => fwd.stats().activeSessions === 0, 5000, "the session to close");
}, 15_000);

const ipv6 = await hasIPv6Loopback();
if (!ipv6) console.warn("skipping IPv6 tests: this machine cannot listen on [::1]");

test.skipIf(!ipv6)(
  "listens on [::1] and forwards to an [::1] target",
  async () => {
    await using upstream = listen(echo, { hostname: "::1" });
    await using fwd = await startForward({ listen: "[::1]:0", to: `[::1]:${upstream.port}` });
    expect(fwd.address).toBe(`[::1]:${fwd.port}`);

    await using client = await dial({ hostname: "::1", port: fwd.port });
    client.write("over IPv6");
    await waitFor(() => client.bytesIn === 9, 5000, "the echo");
    expect(client.text()).toBe("over IPv6");
    const server = await upstream.peer(0);
    expect(server.socket.remoteAddress).toBe("::1");
  },
  15_000,
);
