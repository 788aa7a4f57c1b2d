/**
 * serve under systemd: Type=notify states (READY=1 at start and after a reload, RELOADING=1
 * with MONOTONIC_USEC on SIGHUP, STOPPING=1 on stop, MAINPID= from the new process after an
 * upgrade) and socket activation (a LISTEN_FDS descriptor taken by the listener whose name it
 * carries), with Debian's systemd-socket-activate and a NOTIFY_SOCKET the test binds.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { dial, echo, freePort, hasCommand, HOST, listen, ROOT, spawn, waitFor, waitForListening, within } from "../helpers/net.ts";
import { NotifyReader } from "../helpers/systemd.ts";

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const step of cleanup.splice(0)) step();
});

function tempDir(): string {
  const dir = mkdtempSync("/tmp/tcprouter-systemd-serve-");
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test("READY=1 once listening, RELOADING=1 then READY=1 around SIGHUP, STOPPING=1 on SIGTERM", async () => {
  await using upstream = listen(echo);
  const dir = tempDir();
  const socket = new NotifyReader(`${dir}/notify`);
  cleanup.push(() => socket.close());
  const port = freePort();
  writeFileSync(
    `${dir}/tcprouter.toml`,
    `[[listeners]]\nlisten = "${HOST}:${port}"\nbackend = "app"\n[backends.app]\ntargets = ["${HOST}:${upstream.port}"]\n`,
  );
  await using child = spawn([process.execPath, "run", "src/cli.ts", "--config", `${dir}/tcprouter.toml`], { NOTIFY_SOCKET: socket.name });
  expect(await socket.next(10_000)).toBe("READY=1");
  await waitForListening(port, 5000);
  child.proc.kill("SIGHUP");
  expect(await socket.next()).toMatch(/^RELOADING=1\nMONOTONIC_USEC=\d+$/);
  expect(await socket.next()).toBe("READY=1");
  child.proc.kill("SIGTERM");
  expect(await socket.next()).toBe("STOPPING=1");
  expect(await child.exited()).toBe(0);
}, 30_000);

test("after an upgrade the new process sends MAINPID= with its own pid, then READY=1", async () => {
  await using upstream = listen(echo);
  const dir = tempDir();
  const socket = new NotifyReader(`${dir}/notify`);
  cleanup.push(() => socket.close());
  const port = freePort();
  writeFileSync(
    `${dir}/tcprouter.toml`,
    `[[listeners]]\nlisten = "${HOST}:${port}"\nbackend = "app"\n[backends.app]\ntargets = ["${HOST}:${upstream.port}"]\n`,
  );
  await using child = spawn([process.execPath, "run", "src/cli.ts", "--config", `${dir}/tcprouter.toml`], { NOTIFY_SOCKET: socket.name });
  expect(await socket.next(10_000)).toBe("READY=1");
  child.proc.kill("SIGUSR2");
  const main = await socket.next(10_000);
  expect(main).toMatch(/^MAINPID=\d+$/);
  const pid = Number(main.split("=")[1]);
  cleanup.push(() => {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  });
  expect(pid).not.toBe(child.proc.pid);
  expect(await socket.next()).toBe("READY=1");
  await within(child.proc.exited, 10_000, "the old process to exit");
  await using client = await dial(port);
  client.write("after");
  await waitFor(() => client.text() === "after", 5000, "the new process to serve");
}, 30_000);

test.skipIf(!hasCommand("systemd-socket-activate"))(
  "socket activation: the listener named by --fdname takes the descriptor systemd-socket-activate passes",
  async () => {
    await using upstream = listen(echo);
    const dir = tempDir();
    const port = freePort();
    writeFileSync(
      `${dir}/tcprouter.toml`,
      `[[listeners]]\nname = "redis"\nlisten = "${HOST}:${port}"\nbackend = "app"\n[backends.app]\ntargets = ["${HOST}:${upstream.port}"]\n`,
    );
    await using child = spawn([
      "systemd-socket-activate",
      "-l",
      `${HOST}:${port}`,
      "--fdname=redis",
      process.execPath,
      "run",
      `${ROOT}src/cli.ts`,
      "--config",
      `${dir}/tcprouter.toml`,
    ]);
    await waitForListening(port, 10_000);
    await using client = await dial(port);
    client.write("activated");
    await waitFor(() => client.text() === "activated", 10_000, "an echo through the activated socket");
    await waitFor(() => child.stderrText.includes("socket activation: listener redis takes descriptor 3 (redis,"), 5000, "the activation line");
  },
  30_000,
);
