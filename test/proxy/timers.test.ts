/**
 * The session timers and the handshake deadline (timers.ts, Session.tick): write_timeout,
 * half_closed_timeout, max_session_duration, hello_timeout on TLS listeners, and the share of
 * the session capacity that clients still in their handshake may hold.
 */
import { expect, test } from "bun:test";
import { connect as tlsConnect } from "node:tls";
import { dial, echo, freePort, HOST, listen, MiB, type Peer, slowReader, spawn, waitFor, waitForListening, within } from "../helpers/net.ts";
import { startRouter } from "../helpers/router.ts";
import { CA, CERTS } from "../helpers/tls.ts";

const backend = (port: number) => `
[backends.app]
targets = ["${HOST}:${port}"]
`;

// Regression: a client that connected to a TLS-terminating listener and never finished its
// handshake was kept forever (hello_timeout was refused on tls listeners, nothing else timed
// it). The session clock now fails it at hello_timeout, on by default.
test("a TLS client that never finishes its handshake is closed at hello_timeout (hello_timeout)", async () => {
  await using upstream = listen(echo);
  await using router = await startRouter(`
[[listeners]]
listen = "${HOST}:0"
backend = "app"
hello_timeout = "300ms"
tls = { cert = "fixtures/tls/certs/localhost.pem", key = "fixtures/tls/certs/localhost.key" }
${backend(upstream.port)}`);
  await using silent = await dial(router.port);
  await waitFor(() => silent.hungUp, 3000, "the silent client to be closed");
  expect(router.stats().denied).toBe(1);
  expect(router.stats().activeSessions).toBe(0);
  expect(router.matching("no complete TLS handshake within 300 ms, closed").length).toBe(1);
  // A real client still gets through.
  const reply = await new Promise<string>((resolve, reject) => {
    const socket = tlsConnect({ host: HOST, port: router.port, servername: "localhost", ca: CA }, () => socket.write("ping"));
    socket.on("data", (data) => {
      resolve(data.toString());
      socket.destroy();
    });
    socket.on("error", reject);
  });
  expect(reply).toBe("ping");
});

test("the default hello_timeout (10s) applies to TLS listeners too", async () => {
  await using router = await startRouter(`
[[listeners]]
listen = "${HOST}:0"
backend = "app"
tls = { cert = "fixtures/tls/certs/localhost.pem", key = "fixtures/tls/certs/localhost.key" }
${backend(freePort())}`);
  expect(router.config.listeners[0]!.helloTimeout).toBe(10_000);
});

// Regression: a session whose upstream never reads stayed open for ever with the defaults.
test("a session whose upstream takes none of its queued bytes is closed at write_timeout", async () => {
  await using upstream = listen(slowReader);
  await using router = await startRouter(`
[defaults]
write_timeout = "400ms"
[[listeners]]
listen = "${HOST}:0"
backend = "app"
${backend(upstream.port)}`);
  await using client = await dial(router.port);
  client.stream(8 * MiB);
  await within(client.whenClosed, 5000, "the stalled session to be closed");
  expect(router.stats().activeSessions).toBe(0);
  expect(router.lines.filter((line) => /→ app .*write_timeout \(the upstream took none of \d+ queued bytes\)/.test(line)).length).toBe(1);
});

test("an idle session with nothing queued outlives write_timeout and still echoes", async () => {
  await using upstream = listen(echo);
  await using router = await startRouter(`
[defaults]
write_timeout = "100ms"
half_closed_timeout = "100ms"
[[listeners]]
listen = "${HOST}:0"
backend = "app"
${backend(upstream.port)}`);
  await using client = await dial(router.port);
  client.write("a");
  await waitFor(() => client.bytesIn === 1, 5000, "the first echo");
  await Bun.sleep(700);
  expect(client.hungUp).toBe(false);
  client.write("b");
  await waitFor(() => client.bytesIn === 2, 5000, "the second echo");
  expect(client.text()).toBe("ab");
});

test("a half-closed session that moves nothing is closed at half_closed_timeout; one that moves stays", async () => {
  // The upstream reads and never answers nor closes: the client's FIN is passed on and then nothing.
  await using upstream = listen({ keep: true });
  await using router = await startRouter(`
[[listeners]]
listen = "${HOST}:0"
backend = "app"
half_closed_timeout = "300ms"
${backend(upstream.port)}`);
  await using client = await dial(router.port);
  client.write("request");
  await waitFor(() => upstream.peers.length === 1 && upstream.peers[0]!.bytesIn === 7, 5000, "the request upstream");
  client.shutdown();
  await waitFor(() => upstream.peers[0]!.ended, 5000, "the FIN upstream");
  await within(client.whenClosed, 3000, "the half-closed session to be closed");
  expect(router.lines.filter((line) => /→ app .*half_closed_timeout/.test(line)).length).toBe(1);
});

test("max_session_duration closes a busy session when it is due", async () => {
  await using upstream = listen(echo);
  await using router = await startRouter(`
[[listeners]]
listen = "${HOST}:0"
backend = "app"
max_session_duration = "400ms"
${backend(upstream.port)}`);
  await using client = await dial(router.port);
  const started = performance.now();
  const timer = setInterval(() => client.write("x"), 20);
  try {
    await within(client.whenClosed, 3000, "the session to reach its duration");
  } finally {
    clearInterval(timer);
  }
  expect(performance.now() - started).toBeGreaterThanOrEqual(350);
  expect(router.lines.filter((line) => /→ app .*max_duration \(open for 400 ms\)/.test(line)).length).toBe(1);
});

test("check lists the session timers", async () => {
  const { renderPlan } = await import("../../src/commands/check.ts");
  const { parseConfig } = await import("../../src/config/load.ts");
  const plan = renderPlan(
    parseConfig(`[[listeners]]\nlisten = "${HOST}:1"\nbackend = "app"\nwrite_timeout = "off"\n[backends.app]\ntargets = ["${HOST}:2"]\n`, "toml"),
  );
  expect(plan).toContain("session timers: hello_timeout 10s, write_timeout 2m, half_closed_timeout 10m, max_session_duration off");
  expect(plan).toContain("(write_timeout off)");
});

// Regression: with a process open file limit of 256, 100 clients that connected to a TLS
// listener and sent nothing took every session the limit allows, and a plain listener of the
// same process refused its clients. Clients in their handshake or preface may now hold only
// half of the capacity.
test("silent clients on a TLS listener do not starve a plain listener of the same process", async () => {
  await using upstream = listen(echo);
  const tlsPort = freePort();
  const plainPort = freePort();
  const dir = await import("node:fs").then((fs) => fs.mkdtempSync("/tmp/tcprouter-starve-"));
  const config = `${dir}/tcprouter.toml`;
  await Bun.write(
    config,
    `[[listeners]]
listen = "${HOST}:${tlsPort}"
backend = "app"
tls = { cert = "${CERTS}/localhost.pem", key = "${CERTS}/localhost.key" }
[[listeners]]
listen = "${HOST}:${plainPort}"
backend = "app"
${backend(upstream.port)}`,
  );
  // ulimit -n 256 leaves room for (256 - 64) / 2 = 96 sessions, 48 of them in a handshake.
  await using child = spawn(["bash", "-c", `ulimit -n 256 && exec "${process.execPath}" run src/cli.ts --config ${config} --log-level warn`]);
  const held: Peer[] = [];
  try {
    await waitForListening(plainPort, 10_000);
    for (let i = 0; i < 100; i++) held.push(await dial(tlsPort));
    await waitFor(() => held.filter((peer) => peer.hungUp).length >= 100 - 48, 10_000, "the silent clients beyond half the capacity to be refused");
    for (let i = 0; i < 5; i++) {
      await using client = await dial(plainPort);
      client.write(`ping ${i}`);
      await waitFor(() => client.bytesIn === 6, 5000, "an echo through the plain listener");
      expect(client.text()).toBe(`ping ${i}`);
    }
    expect(child.stderrText).toContain("clients still in their handshake or preface hold 48 of the 96 sessions");
  } finally {
    for (const peer of held) peer.terminate();
    await import("node:fs").then((fs) => fs.rmSync(dir, { recursive: true, force: true }));
  }
}, 30_000);
