/**
 * Bun 1.4.5 facts for handing sockets to another process (binary upgrade in place; listeners
 * bound once and passed on). Each test proves one fact on loopback with real sockets and
 * child processes (children/*.ts); a negative fact asserts what Bun actually does, with a
 * comment on what it means for the handover.
 */
import { afterEach, expect, test } from "bun:test";
import net from "node:net";
import { dial, HOST, waitFor, type Peer } from "../helpers/net.ts";
import { startChild, type LineChild } from "./helpers.ts";

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const step of cleanup.splice(0)) step();
});

/** A Bun.listen listener: the parent's copy of the handed-over socket (`listener.fd` is not in the types). */
function bunListener() {
  const listener = Bun.listen({ hostname: HOST, port: 0, socket: { open: (socket) => void socket.write("parent\n"), data() {}, error() {} } });
  cleanup.push(() => listener.stop(true));
  return { fd: (listener as unknown as { fd: number }).fd, port: listener.port, stop: () => listener.stop(true) };
}

/** A node:net server; its fd is `_handle.fd` (not in the types). */
async function netListener() {
  const server = net.createServer((socket) => socket.end("parent\n"));
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  cleanup.push(() => server.close());
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
  return { fd, port: (server.address() as net.AddressInfo).port, stop: () => server.close() };
}

/** Connects, sends `hello N`, and expects the child's greeting and the echo, byte for byte. */
async function expectChildAnswers(port: number, pid: number, count: number): Promise<void> {
  const peers: Peer[] = [];
  for (let n = 0; n < count; n++) peers.push(await dial(port));
  for (const [n, peer] of peers.entries()) peer.write(`hello ${n}\n`);
  for (const [n, peer] of peers.entries()) {
    const want = `child ${pid}\nhello ${n}\n`;
    await waitFor(() => peer.text().length >= want.length || peer.hungUp, 5000, `connection ${n}'s answer`);
    expect(peer.text()).toBe(want);
    expect(peer.hungUp).toBe(false);
  }
  for (const peer of peers) await peer[Symbol.asyncDispose]();
}

for (const [name, make] of [
  ["Bun.listen's listener.fd", bunListener],
  ["a node:net server's _handle.fd", netListener],
] as const) {
  test(`${name} passed at stdio[3] is adopted with Bun.listen({ fd: 3 }); connections queued before the adoption are all accepted by the child`, async () => {
    const parent = await make();
    await using child = startChild("adopt-listener.ts", [], parent.fd);
    // The parent stops accepting at once: until the child adopts the socket, connections wait
    // in the kernel's accept queue (the handshake completes; nobody accepts).
    parent.stop();
    const queued: Peer[] = [];
    for (let n = 0; n < 5; n++) queued.push(await dial(parent.port));
    for (const [n, peer] of queued.entries()) peer.write(`queued ${n}\n`);
    child.send("adopt");
    const adopted = await child.line("adopted", 8000);
    // An adopted listener does not know its port (listener.port is undefined): learn the
    // address with getsockname (src/util/systemd.ts boundAddress) when it matters.
    expect(adopted.port).toBeNull();
    const pid = child.proc.pid;
    for (const [n, peer] of queued.entries()) {
      const want = `child ${pid}\nqueued ${n}\n`;
      await waitFor(() => peer.text().length >= want.length || peer.hungUp, 5000, `queued connection ${n}`);
      expect(peer.text()).toBe(want);
      expect(peer.hungUp).toBe(false); // none was reset
    }
    for (const peer of queued) await peer[Symbol.asyncDispose]();
  }, 15_000);
}

test("the parent stopping its listener after the handover does not close the listening socket: the port keeps accepting in the child", async () => {
  const parent = bunListener();
  await using child = startChild("adopt-listener.ts", [], parent.fd);
  child.send("adopt");
  await child.line("adopted", 8000);
  // Both processes now listen on one socket; stop(true) in the parent is close(2) of its copy.
  parent.stop();
  await expectChildAnswers(parent.port, child.proc.pid, 5);
}, 15_000);

/**
 * The old process (children/old-session.ts) accepts one connection from `peer` and pauses it;
 * the new one (children/new-session.ts) adopts it with Bun.connect({ fd: 3 }) and answers
 * `new:` + each chunk.
 */
async function handOver(method: string): Promise<{ old: LineChild; peer: Peer }> {
  const old = startChild("old-session.ts", [method]);
  const { port } = (await old.line("port", 8000)) as { port: number };
  const peer = await dial(port);
  await old.line("accepted");
  old.send("handover");
  const { spawned } = (await old.line("spawned")) as { spawned: number };
  old.alsoKill.push(spawned);
  await old.line("adopted", 8000);
  peer.write("before\n");
  await waitFor(() => peer.text() === "new:before\n", 5000, "the new process to answer");
  return { old, peer };
}

test("Bun.connect({ fd: 3 }) adopts an established TCP socket: bytes flow both ways, exactly", async () => {
  const { old, peer } = await handOver("none");
  await using _old = old;
  await using _peer = peer;
  const payload = Buffer.from(Array.from({ length: 4096 }, (_, n) => n % 251));
  peer.write(payload);
  const want = Buffer.concat([Buffer.from("new:before\n"), Buffer.from("new:"), payload]);
  // The answer may come in several chunks (one `new:` per chunk read): compare the payload bytes.
  await waitFor(() => peer.received().length >= want.length, 5000, "the echoed payload");
  const body = peer.received().subarray("new:before\n".length);
  const chunks = body.toString("latin1").split("new:").slice(1);
  expect(Buffer.from(chunks.join(""), "latin1").equals(payload)).toBe(true);
}, 15_000);

test("bytes already in the kernel's receive buffer at the handover reach the adopter; none are lost", async () => {
  await using old = startChild("old-session.ts", ["none"]);
  const { port } = (await old.line("port", 8000)) as { port: number };
  await using peer = await dial(port);
  await old.line("accepted");
  peer.write("unread bytes\n");
  // The old process paused the socket on accept: the bytes sit unread in its receive buffer.
  for (;;) {
    const before = old.lines.length;
    old.send("queued");
    await waitFor(() => old.lines.length > before, 5000, "a queued line");
    if (old.lines.at(-1)!.queued === 13) break;
    await Bun.sleep(10);
  }
  old.send("handover");
  const { spawned } = (await old.line("spawned")) as { spawned: number };
  old.alsoKill.push(spawned);
  await waitFor(() => peer.text() === "new:unread bytes\n", 8000, "the adopter to read the queued bytes");
  expect(old.has("oldData")).toBe(false); // the paused old copy read nothing
}, 15_000);

/**
 * How the old process may close its copy of a handed-over socket. `atClose`: what the peer
 * sees at that moment; `later`: what the peer sees when the new process closes with end().
 */
const closes = [
  { method: "exit", how: "the old process exiting", atClose: "nothing", later: "FIN" },
  { method: "close", how: "socket.close()", atClose: "nothing", later: "FIN" },
  // Bun's end() is close(2) without shutdown(2): with another holder of the socket no FIN goes out.
  { method: "end", how: "socket.end()", atClose: "nothing", later: "FIN" },
  // Silent for the kernel, but Bun is not told: no close event, and its socket object keeps a
  // descriptor number the process may reuse for another file. Do not use.
  { method: "ffi-close", how: "close(2) of socket.fd through bun:ffi", atClose: "nothing", later: "FIN" },
  { method: "fs-close", how: "fs.closeSync(socket.fd)", atClose: "nothing", later: "FIN" },
  // terminate() sets SO_LINGER {1, 0} on the socket, which the new process shares: its later
  // close(2), the last one, then resets the connection instead of sending FIN. Do not use.
  { method: "terminate", how: "socket.terminate()", atClose: "nothing", later: "RST" },
  // shutdown(2) acts on the socket, not the descriptor: the FIN goes out although the new
  // process still holds it, and the new process can no longer send.
  { method: "shutdown", how: "socket.shutdown()", atClose: "FIN", later: "nothing" },
] as const;

for (const { method, how, atClose, later } of closes) {
  const name =
    atClose === "nothing"
      ? `${how} closes the old copy of a handed-over socket silently (no FIN, no RST); the new process's own close later sends ${later}`
      : `${how} in the old process sends FIN to the peer although the new process holds the socket`;
  test(name, async () => {
    const { old, peer } = await handOver(method);
    await using _old = old;
    await using _peer = peer;
    old.send("close");
    if (method === "exit") await old.proc.exited;
    else await old.line("closed");
    if (atClose === "FIN") {
      await waitFor(() => peer.hungUp, 5000, "the peer to see FIN");
      expect(peer.ended).toBe(true);
      expect(peer.closeError).toBeUndefined();
      return;
    }
    // A FIN or RST sent by the close would arrive before this answer, or stop it.
    peer.write("after\n");
    await waitFor(() => peer.text().endsWith("new:after\n") || peer.hungUp, 5000, "the new process to answer after the close");
    expect(peer.text()).toBe("new:before\nnew:after\n");
    expect(peer.hungUp).toBe(false);
    if (method === "close" || method === "end" || method === "terminate") expect(old.has("oldClose")).toBe(true);
    if (method === "ffi-close" || method === "fs-close") expect(old.has("oldClose")).toBe(false);
    // The new process answers `bye` and closes with end(): the last descriptor goes.
    peer.write("bye\n");
    await waitFor(() => peer.closed || peer.ended, 5000, "the new process's close");
    expect(peer.text()).toBe("new:before\nnew:after\nnew:bye\n");
    if (later === "FIN") {
      expect(peer.ended).toBe(true);
      expect(peer.closeError).toBeUndefined();
    } else {
      await waitFor(() => peer.closed, 5000, "the reset");
      expect(peer.ended).toBe(false);
      expect(String(peer.closeError)).toContain("ECONNRESET");
    }
  }, 15_000);
}

test("while the old process still holds the socket, the new process's end() sends no FIN either (end() is close(2), not shutdown(2))", async () => {
  const { old, peer } = await handOver("none");
  await using _old = old;
  await using _peer = peer;
  peer.write("bye\n");
  await old.line("close"); // the new process closed its copy
  peer.write("still\n");
  // The peer's bytes land in the socket, which the paused old copy still holds: nothing hung up.
  await waitFor(
    async () => {
      const before = old.lines.length;
      old.send("queued");
      await waitFor(() => old.lines.length > before, 5000, "a queued line");
      return old.lines.at(-1)!.queued === 6;
    },
    5000,
    "the bytes to wait in the old copy",
  );
  expect(peer.text()).toBe("new:before\nnew:bye\n");
  expect(peer.hungUp).toBe(false);
}, 15_000);

test("an adopted socket gets end (FIN) and close events, and pause()/resume() hold data back and let it through", async () => {
  const { old, peer } = await handOver("exit");
  await using _old = old;
  await using _peer = peer;
  old.send("close");
  await old.proc.exited;
  peer.write("pause\n");
  await old.line("paused");
  peer.write("while paused\n");
  const want = "new:before\npaused, 0 data events\nnew:while paused\n";
  await waitFor(() => peer.text().length >= want.length, 5000, "the answer after resume()");
  expect(peer.text()).toBe(want);
  peer.shutdown(); // FIN to the new process
  await old.line("end");
  await waitFor(() => peer.ended, 5000, "the new process's FIN");
  expect(peer.text()).toBe(`${want}fin seen\n`);
  expect((await old.line("close")).close).toBeNull();
}, 15_000);
