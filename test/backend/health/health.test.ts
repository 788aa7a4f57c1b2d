import { afterEach, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket, Subprocess, TCPSocketListener, UnixSocketListener } from "bun";
import { createConsola } from "consola";
import type { Address } from "../../../src/util/address.ts";
import { HealthChecker, type CheckedTarget, type HealthConfig } from "../../../src/backend/health/checker.ts";
import type { Logger } from "../../../src/util/log.ts";

const REDIS = Bun.which("redis-server");
const REDIS_CLI = Bun.which("redis-cli");
const NO_REDIS = REDIS === null || REDIS_CLI === null;
if (NO_REDIS) console.warn("health.test.ts: redis-server or redis-cli not found, Redis tests are skipped");

const PING = new TextEncoder().encode("PING\r\n");
const PONG = new TextEncoder().encode("+PONG");

// Everything a test opens, closed in afterEach.
const checkers: HealthChecker[] = [];
const servers: (TCPSocketListener<Peer> | UnixSocketListener<Peer>)[] = [];
const processes: Subprocess[] = [];

afterEach(async () => {
  for (const checker of checkers.splice(0)) checker.stop();
  for (const server of servers.splice(0)) server.stop(true);
  for (const proc of processes.splice(0)) {
    process.kill(proc.pid, "SIGKILL");
    await proc.exited;
  }
});

/** Polls `condition` every 10 ms; fails with `what` after `ms`. */
async function waitFor(what: string, condition: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(10);
  }
}

async function waitForAsync(what: string, condition: () => Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(20);
  }
}

function collectingLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const log = createConsola({ level: 3, reporters: [{ log: (entry) => void lines.push(entry.args.join(" ")) }] });
  return { log, lines };
}

function checker(config: Partial<HealthConfig>, log: Logger, name = "test"): HealthChecker {
  const full: HealthConfig = { interval: 50, timeout: 500, rise: 2, fall: 3, send: null, expect: null, ...config };
  const created = new HealthChecker(name, full, log);
  checkers.push(created);
  return created;
}

function target(address: Address): CheckedTarget {
  const key = address.kind === "unix" ? `unix:${address.path}` : `${address.host}:${address.port}`;
  return { address, key, healthy: true };
}

const tcp = (port: number): Address => ({ kind: "tcp", host: "127.0.0.1", port });

/** How a test server answers a probe. */
type Behaviour = "accept" | "silent" | "close" | "error-reply" | "split-pong";

interface Peer {
  behaviour: Behaviour;
  accepted: number;
  open: number;
}

const peerHandlers = {
  open(socket: Socket<Peer>) {
    socket.data.accepted++;
    socket.data.open++;
    if (socket.data.behaviour === "close") socket.end();
  },
  data(socket: Socket<Peer>) {
    const behaviour = socket.data.behaviour;
    if (behaviour === "error-reply") socket.write("-ERR unknown command\r\n");
    if (behaviour === "split-pong") {
      socket.write("+PO");
      setTimeout(() => socket.write("NG\r\n"), 20);
    }
  },
  close(socket: Socket<Peer>) {
    socket.data.open--;
  },
  error() {},
};

/** A plain Bun.listen server with counters. */
function server(behaviour: Behaviour): { port: number; peer: Peer } {
  const peer: Peer = { behaviour, accepted: 0, open: 0 };
  const listener = Bun.listen<Peer>({ hostname: "127.0.0.1", port: 0, data: peer, socket: peerHandlers });
  servers.push(listener);
  return { port: listener.port, peer };
}

async function freePort(): Promise<number> {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

async function canConnect(port: number): Promise<boolean> {
  try {
    const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {}, error() {}, connectError() {} } });
    socket.end();
    return true;
  } catch {
    return false;
  }
}

async function startRedis(port: number): Promise<Subprocess> {
  const proc = Bun.spawn([REDIS!, "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdout: "ignore",
    stderr: "ignore",
  });
  processes.push(proc);
  const deadline = Date.now() + 5000;
  while (!(await canConnect(port))) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server on port ${port} did not start`);
    await Bun.sleep(20);
  }
  return proc;
}

/** Connections Redis has accepted since it started (INFO stats), including redis-cli's own. */
async function redisConnections(port: number): Promise<number> {
  const cli = Bun.spawn([REDIS_CLI!, "-p", String(port), "info", "stats"], { stdout: "pipe", stderr: "ignore" });
  const text = await new Response(cli.stdout).text();
  await cli.exited;
  return Number(/total_connections_received:(\d+)/.exec(text)?.[1] ?? 0) - 1;
}

async function killRedis(proc: Subprocess): Promise<void> {
  process.kill(proc.pid, "SIGKILL");
  await proc.exited;
  processes.splice(processes.indexOf(proc), 1);
}

const openFds = () => readdirSync("/proc/self/fd").length;

describe("TCP checks", () => {
  test("marks a live target healthy and a closed port down after fall checks", async () => {
    const { log, lines } = collectingLogger();
    const live = server("accept");
    const closedPort = await freePort();
    const up = target(tcp(live.port));
    const closed = target(tcp(closedPort));
    checker({ fall: 3 }, log).setTargets([up, closed]);
    expect(closed.healthy).toBe(true); // targets start healthy
    await waitFor("the closed port to be marked down", () => !closed.healthy);
    await waitFor("3 checks of the live target", () => live.peer.accepted >= 3);
    expect(up.healthy).toBe(true);
    expect(lines).toEqual([`backend test: target 127.0.0.1:${closedPort} is down (3 failed checks: connection refused)`]);
  });

  test("needs fall consecutive failures before marking a target down", async () => {
    const { log, lines } = collectingLogger();
    const refusing = server("close"); // accepts, then closes at once: "closed before reply"
    const t = target(tcp(refusing.port));
    checker({ fall: 4, expect: PONG }, log).setTargets([t]);
    await waitFor("the target to be marked down", () => !t.healthy);
    expect(refusing.peer.accepted).toBeGreaterThanOrEqual(4);
    expect(lines).toEqual([`backend test: target 127.0.0.1:${refusing.port} is down (4 failed checks: closed before reply)`]);
  });

  test("checks a unix socket target", async () => {
    const { log } = collectingLogger();
    const path = join(tmpdir(), `tcprouter-health-${process.pid}-${Date.now()}.sock`);
    const peer: Peer = { behaviour: "accept", accepted: 0, open: 0 };
    servers.push(Bun.listen<Peer>({ unix: path, data: peer, socket: peerHandlers }));
    const t = target({ kind: "unix", path });
    checker({}, log).setTargets([t]);
    await waitFor("2 checks over the unix socket", () => peer.accepted >= 2);
    expect(t.healthy).toBe(true);
  });

  test("does not start a probe while the previous one is still in flight", async () => {
    const { log } = collectingLogger();
    const silent = server("silent");
    const t = target(tcp(silent.port));
    const started = Date.now();
    // Ticks every 20 ms, but each probe waits 300 ms for a reply that never comes.
    checker({ interval: 20, timeout: 300, expect: PONG, fall: 10 }, log).setTargets([t]);
    await waitFor("3 probes", () => silent.peer.accepted >= 3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2 * 300);
  });
});

describe("send and expect", () => {
  test("fails against a server that answers something else", async () => {
    const { log, lines } = collectingLogger();
    const wrong = server("error-reply");
    const t = target(tcp(wrong.port));
    checker({ send: PING, expect: PONG, fall: 2 }, log).setTargets([t]);
    await waitFor("the target to be marked down", () => !t.healthy);
    expect(lines).toEqual([`backend test: target 127.0.0.1:${wrong.port} is down (2 failed checks: unexpected reply (expected prefix "+PONG"))`]);
  });

  test("fails against a server that answers nothing before the timeout", async () => {
    const { log, lines } = collectingLogger();
    const silent = server("silent");
    const t = target(tcp(silent.port));
    checker({ send: PING, expect: PONG, fall: 2, timeout: 100 }, log).setTargets([t]);
    await waitFor("the target to be marked down", () => !t.healthy);
    expect(lines).toEqual([`backend test: target 127.0.0.1:${silent.port} is down (2 failed checks: timeout)`]);
  });

  test("passes when the expected bytes arrive in several reads", async () => {
    const { log, lines } = collectingLogger();
    const split = server("split-pong");
    const t = target(tcp(split.port));
    const health = checker({ send: PING, expect: PONG, fall: 2, rise: 2 }, log);
    health.setTargets([t]);
    health.reportFailure(t);
    health.reportFailure(t);
    expect(t.healthy).toBe(false);
    await waitFor("the target to come back up", () => t.healthy);
    expect(lines).toEqual([
      `backend test: target 127.0.0.1:${split.port} is down (2 failed checks: a session failed to connect)`,
      `backend test: target 127.0.0.1:${split.port} is up (2 passed checks)`,
    ]);
  });
});

describe.skipIf(NO_REDIS)("against redis-server", () => {
  test("PING → +PONG passes against Redis", async () => {
    const { log, lines } = collectingLogger();
    const port = await freePort();
    await startRedis(port);
    const t = target(tcp(port));
    const health = checker({ send: PING, expect: PONG, fall: 1, rise: 2 }, log);
    health.setTargets([t]);
    health.reportFailure(t);
    expect(t.healthy).toBe(false);
    await waitFor("Redis to be marked up", () => t.healthy);
    expect(lines).toEqual([
      `backend test: target 127.0.0.1:${port} is down (1 failed check: a session failed to connect)`,
      `backend test: target 127.0.0.1:${port} is up (2 passed checks)`,
    ]);
  }, 15_000);

  test("marks a killed Redis down within fall × interval and up again after a restart", async () => {
    const { log, lines } = collectingLogger();
    const port = await freePort();
    let redis = await startRedis(port);
    const t = target(tcp(port));
    const config = { send: PING, expect: PONG, interval: 50, timeout: 200, fall: 3, rise: 2 };
    checker(config, log, "redis").setTargets([t]);
    await waitForAsync("Redis to be checked twice", async () => (await redisConnections(port)) >= 3); // + our own connect

    await killRedis(redis);
    const killedAt = Date.now();
    await waitFor("Redis to be marked down", () => !t.healthy);
    // fall checks, one interval apart, plus one probe's timeout and slack for a busy machine.
    expect(Date.now() - killedAt).toBeLessThan(config.fall * config.interval + config.timeout + 2000);

    redis = await startRedis(port);
    await waitFor("Redis to be marked up", () => t.healthy);
    expect(lines).toEqual([
      `backend redis: target 127.0.0.1:${port} is down (3 failed checks: connection refused)`,
      `backend redis: target 127.0.0.1:${port} is up (2 passed checks)`,
    ]);
  }, 20_000);
});

describe("state", () => {
  test("reportFailure counts toward fall", async () => {
    const { log, lines } = collectingLogger();
    const live = server("accept");
    const t = target(tcp(live.port));
    // An interval this long never fires during the test: only reported failures count.
    const health = checker({ interval: 1e9, fall: 3 }, log);
    health.setTargets([t]);
    health.reportFailure(t);
    health.reportFailure(t);
    expect(t.healthy).toBe(true);
    health.reportFailure(t);
    expect(t.healthy).toBe(false);
    health.reportFailure(t); // failures while down are not logged again
    expect(lines).toEqual([`backend test: target 127.0.0.1:${live.port} is down (3 failed checks: a session failed to connect)`]);
  });

  test("a passed check resets the count of reported failures", async () => {
    const { log } = collectingLogger();
    const live = server("accept");
    const t = target(tcp(live.port));
    const health = checker({ fall: 2 }, log);
    health.setTargets([t]);
    health.reportFailure(t);
    // Probes never overlap: once the second has connected, the first has finished and passed.
    await waitFor("2 checks", () => live.peer.accepted >= 2);
    health.reportFailure(t);
    expect(t.healthy).toBe(true);
  });

  test("setTargets keeps the state of kept keys and stops checking removed ones", async () => {
    const { log, lines } = collectingLogger();
    const closedPort = await freePort();
    const removed = server("accept");
    const added = server("accept");
    const down = target(tcp(closedPort));
    const health = checker({ fall: 2 }, log);
    health.setTargets([down, target(tcp(removed.port))]);
    await waitFor("the closed port to be marked down", () => !down.healthy);
    await waitFor("the removed target to be checked", () => removed.peer.accepted >= 1);

    const downAgain = target(tcp(closedPort)); // a reload builds new objects with the same keys
    health.setTargets([downAgain, target(tcp(added.port))]);
    const acceptedAtRemoval = removed.peer.accepted;
    expect(downAgain.healthy).toBe(false);
    await waitFor("5 checks of the added target", () => added.peer.accepted >= 5);
    expect(removed.peer.accepted).toBeLessThanOrEqual(acceptedAtRemoval + 1); // at most a connect already under way
    expect(downAgain.healthy).toBe(false);
    expect(lines).toEqual([`backend test: target 127.0.0.1:${closedPort} is down (2 failed checks: connection refused)`]);
  });

  test("stop() closes every probe and no check runs after it", async () => {
    const { log } = collectingLogger();
    const silent = server("silent");
    const live = server("accept");
    const closedPort = await freePort();
    const clock = server("accept");
    const baseline = openFds();

    const health = checker({ send: PING, expect: PONG, timeout: 5000 }, log);
    health.setTargets([target(tcp(silent.port)), target(tcp(live.port)), target(tcp(closedPort))]);
    await waitFor("probes to be in flight", () => silent.peer.open >= 1 && live.peer.open >= 1);
    expect(openFds()).toBeGreaterThan(baseline);
    health.stop();
    const silentAccepted = silent.peer.accepted;
    const liveAccepted = live.peer.accepted;
    await waitFor("open fds to return to the baseline", () => openFds() <= baseline);

    // Another checker's probes show time passing without a sleep.
    checker({}, log, "clock").setTargets([target(tcp(clock.port))]);
    await waitFor("3 checks by another checker", () => clock.peer.accepted >= 3);
    expect(silent.peer.accepted).toBe(silentAccepted);
    expect(live.peer.accepted).toBe(liveAccepted);
  });
});
