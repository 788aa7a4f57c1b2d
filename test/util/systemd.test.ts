/**
 * sd_notify and socket activation without libsystemd (src/util/systemd.ts). The notification
 * socket here is a unix datagram socket the test binds through bun:ffi (Bun cannot bind one),
 * read with non-blocking recv; socket activation runs under systemd-socket-activate.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  decodeSockaddr,
  listenFds,
  mainPid,
  monotonicUsec,
  notify,
  notifyAddress,
  ready,
  reloading,
  startWatchdog,
  status,
  stopping,
  watchdogInterval,
} from "../../src/util/systemd.ts";
import { dial, freePort, hasCommand, HOST, spawn, waitFor, within } from "../helpers/net.ts";
import { NotifyReader } from "../helpers/systemd.ts";

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const step of cleanup.splice(0)) step();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "tcprouter-systemd-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function reader(name: string): NotifyReader {
  const socket = new NotifyReader(name);
  cleanup.push(() => socket.close());
  return socket;
}

test("notify sends each state as one datagram, byte for byte, to a NOTIFY_SOCKET path", async () => {
  const socket = reader(join(tempDir(), "notify"));
  const env = { NOTIFY_SOCKET: socket.name };
  expect(ready(env)).toBe(true);
  expect(await socket.next()).toBe("READY=1");
  expect(stopping(env)).toBe(true);
  expect(await socket.next()).toBe("STOPPING=1");
  expect(mainPid(4711, env)).toBe(true);
  expect(await socket.next()).toBe("MAINPID=4711");
  expect(status("serving 3 listeners\nof 4", env)).toBe(true);
  expect(await socket.next()).toBe("STATUS=serving 3 listeners of 4");
  expect(notify("READY=1\nSTATUS=up", env)).toBe(true);
  expect(await socket.next()).toBe("READY=1\nSTATUS=up");
});

test("notify reaches an abstract NOTIFY_SOCKET (a name starting with @)", async () => {
  const socket = reader(`@tcprouter-test-${process.pid}-${Date.now()}`);
  expect(ready({ NOTIFY_SOCKET: socket.name })).toBe(true);
  expect(await socket.next()).toBe("READY=1");
});

test("reloading sends RELOADING=1 with MONOTONIC_USEC read from CLOCK_MONOTONIC", async () => {
  const socket = reader(join(tempDir(), "notify"));
  const python = hasCommand("python3");
  const clock = async () => BigInt((await spawnText(["python3", "-c", "import time; print(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)"])).trim());
  const before = python ? await clock() : 0n;
  expect(reloading({ NOTIFY_SOCKET: socket.name })).toBe(true);
  const after = python ? await clock() : 0n;
  const message = await socket.next();
  expect(message).toMatch(/^RELOADING=1\nMONOTONIC_USEC=\d+$/);
  const usec = BigInt(message.split("=").at(-1)!);
  if (python) {
    // Another process's CLOCK_MONOTONIC, read just before and just after: the same clock.
    expect(usec).toBeGreaterThanOrEqual(before);
    expect(usec).toBeLessThanOrEqual(after);
  }
  expect(BigInt(monotonicUsec()!)).toBeGreaterThanOrEqual(usec);
});

test("notify returns false, without throwing, when NOTIFY_SOCKET is unset, invalid or nobody listens", () => {
  expect(notify("READY=1", {})).toBe(false);
  expect(notify("READY=1", { NOTIFY_SOCKET: "" })).toBe(false);
  expect(notify("READY=1", { NOTIFY_SOCKET: "relative/path" })).toBe(false);
  expect(notify("READY=1", { NOTIFY_SOCKET: "vsock:2:1234" })).toBe(false);
  expect(notify("READY=1", { NOTIFY_SOCKET: `/${"x".repeat(200)}` })).toBe(false);
  expect(notify("READY=1", { NOTIFY_SOCKET: join(tempDir(), "nobody-here") })).toBe(false);
  expect(notify("", { NOTIFY_SOCKET: "/run/systemd/notify-missing" })).toBe(false);
});

test("the watchdog interval is half of WATCHDOG_USEC, and 0 when it is unset or meant for another process", () => {
  expect(watchdogInterval({ WATCHDOG_USEC: "20000000" }, 42)).toBe(10_000);
  expect(watchdogInterval({ WATCHDOG_USEC: "20000000", WATCHDOG_PID: "42" }, 42)).toBe(10_000);
  expect(watchdogInterval({ WATCHDOG_USEC: "20000000", WATCHDOG_PID: "43" }, 42)).toBe(0);
  expect(watchdogInterval({}, 42)).toBe(0);
  expect(watchdogInterval({ WATCHDOG_USEC: "soon" }, 42)).toBe(0);
});

test("startWatchdog sends WATCHDOG=1 at half the WATCHDOG_USEC period until stopped", async () => {
  const socket = reader(join(tempDir(), "notify"));
  const stop = startWatchdog({ NOTIFY_SOCKET: socket.name, WATCHDOG_USEC: "40000" });
  cleanup.push(stop);
  expect(await socket.next()).toBe("WATCHDOG=1");
  expect(await socket.next()).toBe("WATCHDOG=1");
  stop();
});

test("listenFds reads LISTEN_FDS from fd 3 with their LISTEN_FDNAMES only when LISTEN_PID is this process, and unsets the variables", () => {
  const env: Record<string, string | undefined> = { LISTEN_PID: "42", LISTEN_FDS: "2", LISTEN_FDNAMES: "redis:admin", OTHER: "x" };
  // fds 3 and 4 may not be sockets in this process: FD_CLOEXEC is set where it can be, and the list is the same.
  expect(listenFds(env, 42)).toEqual([
    { fd: 3, name: "redis" },
    { fd: 4, name: "admin" },
  ]);
  expect(env).toEqual({ OTHER: "x" });
  const other: Record<string, string | undefined> = { LISTEN_PID: "41", LISTEN_FDS: "1" };
  expect(listenFds(other, 42)).toEqual([]);
  expect(other).toEqual({});
  expect(listenFds({ LISTEN_PID: "42", LISTEN_FDS: "1", LISTEN_FDNAMES: "a:b" }, 42)).toEqual([{ fd: 3, name: "unknown" }]);
  expect(listenFds({ LISTEN_PID: "42", LISTEN_FDS: "one" }, 42)).toEqual([]);
  expect(listenFds({}, 42)).toEqual([]);
});

test("decodes IPv4, IPv6, unix path and abstract unix socket addresses", () => {
  const v4 = new Uint8Array(16);
  new DataView(v4.buffer).setUint16(0, 2, true);
  new DataView(v4.buffer).setUint16(2, 11000, false);
  v4.set([127, 0, 0, 1], 4);
  expect(decodeSockaddr(v4, 16)).toEqual({ kind: "tcp", host: "127.0.0.1", port: 11000 });
  const v6 = new Uint8Array(28);
  new DataView(v6.buffer).setUint16(0, 10, true);
  new DataView(v6.buffer).setUint16(2, 443, false);
  v6[23] = 1;
  expect(decodeSockaddr(v6, 28)).toEqual({ kind: "tcp", host: "::1", port: 443 });
  const path = notifyAddress("/run/tcprouter.sock")!;
  expect(decodeSockaddr(path.address, path.length)).toEqual({ kind: "unix", path: "/run/tcprouter.sock" });
  const abstract = notifyAddress("@tcprouter")!;
  expect(decodeSockaddr(abstract.address, abstract.length)).toEqual({ kind: "unix", path: "@tcprouter" });
});

async function spawnText(cmd: string[]): Promise<string> {
  await using child = spawn(cmd);
  await child.exited();
  return child.stdoutText;
}

/**
 * Run by systemd-socket-activate: reads its listeners, reports them and what a child started
 * with fd 3 at stdio[3] sees (FD_CLOEXEC is set on the original), then serves the first
 * listener: `activated\n`, then an echo.
 */
const ACTIVATED = `
import { listenFds, socketInfo } from ${JSON.stringify(new URL("../../src/util/systemd.ts", import.meta.url).pathname)};
const fds = listenFds();
const script = "import { socketInfo } from " + JSON.stringify(${JSON.stringify(new URL("../../src/util/systemd.ts", import.meta.url).pathname)}) + "; console.log(JSON.stringify(socketInfo(3)))";
const handed = Bun.spawnSync([process.execPath, "-e", script], { stdio: ["ignore", "pipe", "inherit", fds[0].fd] });
const leaked = Bun.spawnSync([process.execPath, "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
console.log(JSON.stringify({
  fds,
  info: fds.map((listen) => socketInfo(listen.fd)),
  env: Object.keys(process.env).filter((key) => key.startsWith("LISTEN_")),
  handed: JSON.parse(handed.stdout.toString()),
  leaked: JSON.parse(leaked.stdout.toString()),
}));
Bun.listen({ fd: fds[0].fd, socket: { open(socket) { socket.write("activated\\n"); }, data(socket, chunk) { socket.write(chunk); }, error() {} } });
`;

test.skipIf(!hasCommand("systemd-socket-activate"))(
  "under systemd-socket-activate, listenFds finds fd 3 with its --fdname and address, and Bun.listen({ fd }) serves the waiting client",
  async () => {
    const port = freePort();
    await using activate = spawn(["systemd-socket-activate", "-l", `${HOST}:${port}`, "--fdname=router", process.execPath, "-e", ACTIVATED]);
    await activate.stderrMatch(/Listening on/);
    // systemd-socket-activate starts the program on the first connection: this client waits in
    // the accept queue until the program adopts the socket.
    await using client = await dial(port);
    client.write("hello\n");
    await waitFor(() => activate.stdoutText.includes("\n"), 10_000, `the report (stderr: ${activate.stderrText})`);
    const report = JSON.parse(activate.stdoutText.split("\n")[0]!);
    expect(report.fds).toEqual([{ fd: 3, name: "router" }]);
    expect(report.info).toEqual([{ address: { kind: "tcp", host: HOST, port }, type: "stream", listening: true }]);
    expect(report.env).toEqual([]); // LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES are unset
    // FD_CLOEXEC keeps the listener from leaking into other processes, but Bun.spawn's stdio[3]
    // still hands it over (that is how an upgrade passes it on).
    expect(report.handed).toEqual({ address: { kind: "tcp", host: HOST, port }, type: "stream", listening: true });
    expect(report.leaked).toBeNull();
    await waitFor(() => client.text() === "activated\nhello\n", 5000, "the activated program to answer");
    expect(client.hungUp).toBe(false);
    await within(client[Symbol.asyncDispose](), 2000, "the client to close");
  },
  20_000,
);
