/**
 * Signals while the process starts (util/signals.ts): from its first listening socket until its
 * handlers are on, SIGHUP, SIGUSR1 and SIGUSR2 would otherwise take their default action and
 * end the process. A reload or log rotation sent the moment the port answers must not kill it,
 * nor kill a supervisor's worker that is still starting.
 */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { dial, echo, freePort, HOST, listen, ROOT, spawn, spawnCli, waitFor } from "../helpers/net.ts";

/** Dials until the port answers (bounded); every ms counts, so no pause between tries. */
async function untilAnswering(port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      (await dial(port)).terminate();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`port ${port} did not answer within ${ms} ms`);
    }
  }
}

/** `count` signals to `pid`, one a millisecond. */
async function barrage(pid: number, signal: NodeJS.Signals, count: number): Promise<void> {
  for (let n = 0; n < count; n++) {
    process.kill(pid, signal);
    await Bun.sleep(1);
  }
}

async function echoes(port: number, text: string): Promise<void> {
  await using client = await dial(port);
  client.write(text);
  await waitFor(() => client.bytesIn === text.length, 10_000, "the echo");
  expect(client.text()).toBe(text);
}

test("SIGUSR1 and SIGHUP from the moment the port answers: each one handled, the process serves on", async () => {
  await using upstream = listen(echo);
  for (const [signal, line] of [
    ["SIGUSR1", "SIGUSR1: no access log file to reopen"],
    ["SIGHUP", "SIGHUP: nothing to reload without --config"],
  ] as const) {
    const port = freePort();
    await using child = spawnCli(["--listen", `${HOST}:${port}`, "--to", `${HOST}:${upstream.port}`]);
    await untilAnswering(port, 10_000);
    await barrage(child.proc.pid, signal, 20);
    await waitFor(() => child.stderrText.includes(line), 5000, `the ${signal} line`);
    await Bun.sleep(100);
    expect(child.proc.exitCode).toBeNull();
    expect(child.proc.signalCode).toBeNull();
    await echoes(port, `after ${signal}`);
  }
}, 30_000);

test("--workers 2: SIGHUP from the moment the supervisor listens reaches each worker once it is ready; none dies", async () => {
  await using upstream = listen(echo);
  const port = freePort();
  await using supervisor = spawnCli(["--listen", `${HOST}:${port}`, "--to", `${HOST}:${upstream.port}`, "--workers", "2"]);
  await untilAnswering(port, 10_000); // the supervisor binds before its workers start
  await barrage(supervisor.proc.pid, "SIGHUP", 5); // over before a worker can have started (Bun alone takes longer)
  for (const n of [1, 2]) await supervisor.stderrMatch(new RegExp(`\\[worker ${n}\\] SIGHUP: nothing to reload`), 15_000);
  expect(supervisor.stderrText).not.toContain("died");
  expect(supervisor.stderrText).not.toContain("could not start");
  expect(supervisor.proc.exitCode).toBeNull();
  await echoes(port, "served by a worker");
}, 40_000);

test("held signals reach the handlers in the order they came; a second SIGTERM while starting exits 1", async () => {
  const dir = mkdtempSync("/tmp/tcprouter-signals-");
  try {
    const script = `${dir}/held.ts`;
    writeFileSync(
      script,
      `import { holdSignals } from "${ROOT}src/util/signals.ts";
const early = holdSignals();
if (process.argv[2] === "stop") {
  process.kill(process.pid, "SIGTERM");
  await Bun.sleep(200);
  process.kill(process.pid, "SIGINT");
  await Bun.sleep(2000);
  console.log("still running");
} else {
  for (const signal of ["SIGUSR2", "SIGHUP", "SIGUSR1"]) {
    process.kill(process.pid, signal);
    await Bun.sleep(100);
  }
  for (const signal of ["SIGUSR1", "SIGUSR2", "SIGHUP", "SIGINT", "SIGTERM"]) process.on(signal, (s) => console.log("handled", s));
  early.release();
  early.release();
  console.log("released");
}
`,
    );
    await using held = spawn([process.execPath, "run", script]);
    expect(await held.exited(10_000)).toBe(0);
    expect(held.stdoutText).toBe("handled SIGUSR2\nhandled SIGHUP\nhandled SIGUSR1\nreleased\n");
    await using stopped = spawn([process.execPath, "run", script, "stop"]);
    expect(await stopped.exited(10_000)).toBe(1);
    expect(stopped.stdoutText).toBe("");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);
