/**
 * Upgrade in place (workers/upgrade.ts, proxy/handover.ts): SIGUSR2 and POST /api/upgrade start
 * the program at its own path, which takes the listening sockets and the open plain and SNI
 * sessions over; the old process exits. The program here is a one-line wrapper in a temp dir
 * that loads src/cli.ts, so a test can replace it on disk as a package upgrade would.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect as tlsConnect } from "node:tls";
import { buildClientHello } from "../helpers/client-hello.ts";
import {
  bulkEcho,
  type Child,
  dial,
  echo,
  freePort,
  HOST,
  listen,
  MiB,
  patternBytes,
  ROOT,
  sha256,
  source,
  spawn,
  startRedis,
  waitFor,
  waitForListening,
  within,
} from "../helpers/net.ts";
import { hasRedis, RedisClient } from "../helpers/redis.ts";
import { CA, CERTS } from "../helpers/tls.ts";

let dir: string;
let wrapper: string;

beforeEach(() => {
  dir = mkdtempSync("/tmp/tcprouter-upgrade-");
  wrapper = `${dir}/tcprouter.ts`;
  // The program never changes on disk: a test marks the next start as broken with a file
  // (exits at once) or as hanging (never ready), as a bad package upgrade would behave.
  writeFileSync(
    wrapper,
    `if (await Bun.file("${dir}/broken").exists()) process.exit(3);\nif (await Bun.file("${dir}/hang").exists()) await Bun.sleep(60_000);\nawait import("${ROOT}src/cli.ts");\n`,
  );
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the wrapper with this config; the returned child's stderr gathers the old and the new process's lines. */
async function serve(config: string, port: number, extra: string[] = [], env: Record<string, string> = {}): Promise<Child> {
  const file = `${dir}/tcprouter.toml`;
  writeFileSync(file, config);
  const child = spawn([process.execPath, "run", wrapper, "--config", file, ...extra], env);
  // A SIGUSR2 from the moment the port answers waits for its handler (util/signals.ts).
  await waitForListening(port, 10_000);
  return child;
}

/** Sends SIGUSR2 and waits for the new process to say it took over; returns its pid. */
async function upgrade(child: Child, nth = 1): Promise<number> {
  child.proc.kill("SIGUSR2");
  await waitFor(() => (child.stderrText.match(/upgrade: pid \d+ took over/g)?.length ?? 0) >= nth, 15_000, `upgrade #${nth}`);
  const pids = [...child.stderrText.matchAll(/upgrade: pid (\d+) took over/g)].map((m) => Number(m[1]));
  return pids[nth - 1]!;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Kills a process the old one started (the new one outlives the child the test holds). */
function kill(pid: number | undefined): void {
  if (pid !== undefined && alive(pid)) process.kill(pid, "SIGKILL");
}

const plain = (port: number, upstream: number) => `
[[listeners]]
listen = "${HOST}:${port}"
backend = "app"
[backends.app]
targets = ["${HOST}:${upstream}"]
`;

describe("upgrade in place", () => {
  test("an open session moves: the same client socket goes on, no byte lost, doubled or reordered, and the old pid exits", async () => {
    await using upstream = listen(bulkEcho);
    const port = freePort();
    await using old = await serve(plain(port, upstream.port), port);
    let next: number | undefined;
    try {
      await using client = await dial(port, { keep: false });
      const streaming = client.stream(16 * MiB);
      await waitFor(() => client.bytesIn > 2 * MiB, 10_000, "bytes flowing both ways");
      next = await upgrade(old);
      await within(old.proc.exited, 10_000, "the old process to exit");
      expect(old.proc.exitCode).toBe(0);
      await streaming;
      await waitFor(() => client.bytesIn === 16 * MiB, 20_000, "every byte back");
      expect(client.hashIn.digest("hex")).toBe(client.hashOut.digest("hex"));
      expect(client.hungUp).toBe(false);
      expect(old.stderrText).toContain("took over the listeners and 1 of 1 movable sessions; 0 left to drain here");
      expect(alive(next)).toBe(true);
    } finally {
      kill(next);
    }
  }, 60_000);

  test.skipIf(!hasRedis)(
    "Redis clients keep their connections through an upgrade: the same CLIENT ID answers before and after",
    async () => {
      await using redis = await startRedis();
      const port = freePort();
      await using old = await serve(plain(port, redis.port), port);
      let next: number | undefined;
      try {
        const clients = await Promise.all(Array.from({ length: 5 }, () => RedisClient.connect(port)));
        const ids = await Promise.all(clients.map((client) => client.call("CLIENT", "ID")));
        for (const [n, client] of clients.entries()) expect(await client.call("SET", `key:${n}`, `before ${n}`)).toBe("OK");
        next = await upgrade(old);
        await within(old.proc.exited, 10_000, "the old process to exit");
        expect(old.stderrText).toContain("took over the listeners and 5 of 5 movable sessions");
        for (const [n, client] of clients.entries()) {
          expect(await client.call("CLIENT", "ID")).toBe(ids[n]!); // the same server-side connection
          expect(await client.call("GET", `key:${n}`)).toBe(`before ${n}`);
          expect(await client.call("PING")).toBe("PONG");
        }
        for (const client of clients) await client[Symbol.asyncDispose]();
      } finally {
        kill(next);
      }
    },
    60_000,
  );

  test("a UDP listener answers through an upgrade: the new process binds the port beside the old one, flows start again there", async () => {
    const echo = await Bun.udpSocket({
      hostname: HOST,
      port: 0,
      socket: {
        data(socket, datagram, port, address) {
          socket.send(datagram, port, address);
        },
      },
    });
    const port = freePort();
    const tcp = listen(); // the TCP listener the test waits for (serve() polls a TCP port)
    await using old = await serve(
      `[[listeners]]\nname = "dns"\nlisten = "${HOST}:${port}"\nprotocol = "udp"\nbackend = "u"\n[[listeners]]\nlisten = "${HOST}:${port}"\nbackend = "t"\n[backends.u]\ntargets = ["${HOST}:${echo.port}"]\n[backends.t]\ntargets = ["${HOST}:${tcp.port}"]\n`,
      port,
    );
    let next: number | undefined;
    const replies: string[] = [];
    const client = await Bun.udpSocket({
      socket: {
        data(_socket, datagram) {
          replies.push(datagram.toString());
        },
      },
    });
    try {
      client.send("before", port, HOST);
      await waitFor(() => replies.includes("before"), 5000, "a reply before");
      next = await upgrade(old);
      await within(old.proc.exited, 10_000, "the old process to exit");
      client.send("after", port, HOST);
      await waitFor(() => replies.includes("after"), 5000, "a reply after, from the new process");
    } finally {
      client.close();
      echo.close();
      await tcp[Symbol.asyncDispose]();
      kill(next);
    }
  }, 60_000);

  test("bytes queued toward a client that stopped reading move with the session", async () => {
    await using upstream = listen(source(8 * MiB));
    const port = freePort();
    await using old = await serve(plain(port, upstream.port), port);
    let next: number | undefined;
    try {
      await using client = await dial(port, { keep: false });
      client.pause();
      // The last upstream connection is this client's (waitForListening made one before it).
      await waitFor(() => (upstream.peers.at(-1)?.bytesOut ?? 0) > 2 * MiB, 10_000, "the upstream to have sent megabytes");
      await Bun.sleep(200); // the router's queue fills to its high-water mark
      next = await upgrade(old);
      await within(old.proc.exited, 10_000, "the old process to exit");
      client.resume();
      await waitFor(() => client.bytesIn === 8 * MiB, 20_000, "all 8 MiB at the client");
      expect(client.hashIn.digest("hex")).toBe(sha256(patternBytes(8 * MiB)));
    } finally {
      kill(next);
    }
  }, 60_000);

  test("an SNI passthrough session moves too; a TLS-terminated one drains in the old process", async () => {
    await using upstream = listen(echo);
    const sni = freePort();
    const terminating = freePort();
    await using old = await serve(
      `${plain(sni, upstream.port).replace(`listen = "${HOST}:${sni}"`, `listen = "${HOST}:${sni}"\nmode = "sni"`)}
[[listeners]]
listen = "${HOST}:${terminating}"
backend = "app"
tls = { cert = "${CERTS}/localhost.pem", key = "${CERTS}/localhost.key" }
`,
      sni,
    );
    let next: number | undefined;
    try {
      await using passthrough = await dial(sni);
      passthrough.write(buildClientHello({ serverName: "db.example.com" }));
      passthrough.write("after the hello;");
      await waitFor(() => passthrough.text().endsWith("after the hello;"), 5000, "the passthrough echo");
      const tls = tlsConnect({ host: HOST, port: terminating, servername: "localhost", ca: CA });
      let tlsText = "";
      tls.on("data", (data) => (tlsText += data.toString()));
      await new Promise((resolve) => tls.once("secureConnect", resolve));
      tls.write("one;");
      await waitFor(() => tlsText === "one;", 5000, "the TLS echo");
      next = await upgrade(old);
      expect(old.stderrText).toContain("took over the listeners and 1 of 1 movable sessions; 1 left to drain here");
      passthrough.write("moved;");
      await waitFor(() => passthrough.text().endsWith("moved;"), 5000, "the moved session's echo");
      tls.write("two;");
      await waitFor(() => tlsText === "one;two;", 5000, "the TLS session, still in the old process");
      expect(old.proc.exitCode).toBeNull();
      tls.end();
      await within(old.proc.exited, 10_000, "the old process to exit once its TLS session ended");
      expect(passthrough.hungUp).toBe(false);
    } finally {
      kill(next);
    }
  }, 60_000);

  test("20 upgrades in a row under a loop of fresh connections: none refused or reset", async () => {
    await using upstream = listen(echo);
    const port = freePort();
    await using old = await serve(plain(port, upstream.port), port, ["--log-level", "warn"]);
    // Lines at info are off: count the take-overs from the new processes' pids instead.
    const pids: number[] = [];
    let running = true;
    let ok = 0;
    const failures: string[] = [];
    const loop = (async () => {
      const deadline = Date.now() + 120_000;
      while (running && Date.now() < deadline) {
        try {
          await using client = await dial(port);
          client.write("ping");
          await waitFor(() => client.bytesIn === 4 || client.hungUp, 5000, "an echo");
          if (client.text() === "ping") ok++;
          else failures.push(`got ${JSON.stringify(client.text())}, closed ${client.hungUp}`);
        } catch (error) {
          failures.push((error as Error).message);
        }
      }
    })();
    try {
      let current = old.proc.pid;
      for (let n = 1; n <= 20; n++) {
        process.kill(current, "SIGUSR2");
        const before = current;
        await waitFor(() => !alive(before), 15_000, `process ${before} to hand over and exit (upgrade ${n})`);
        const found = Bun.spawnSync(["pgrep", "-f", `${wrapper} --config`])
          .stdout.toString()
          .trim()
          .split("\n")
          .map(Number)
          .filter((pid) => pid > 0 && alive(pid));
        expect(found.length).toBe(1);
        current = found[0]!;
        pids.push(current); // signalled at once: a signal before its handlers are on waits for them
      }
    } finally {
      running = false;
      await loop;
      for (const pid of pids) kill(pid);
    }
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(100);
  }, 180_000);

  test("a new program that exits at once leaves the old one serving, with one error line", async () => {
    await using upstream = listen(echo);
    const port = freePort();
    await using old = await serve(plain(port, upstream.port), port);
    await using client = await dial(port);
    writeFileSync(`${dir}/broken`, "");
    old.proc.kill("SIGUSR2");
    await waitFor(() => old.stderrText.includes("upgrade failed"), 25_000, "the failure line");
    expect(old.stderrText).toContain("upgrade failed: the new process exited (exit code 3) before it was ready; this process keeps serving");
    client.write("still here");
    await waitFor(() => client.text() === "still here", 5000, "the session to go on");
    await using fresh = await dial(port);
    fresh.write("new");
    await waitFor(() => fresh.text() === "new", 5000, "a new session");
    expect(old.proc.exitCode).toBeNull();
  }, 30_000);

  test("a new program that never says it is ready is killed at --upgrade-timeout; the old one serves on", async () => {
    await using upstream = listen(echo);
    const port = freePort();
    await using old = await serve(plain(port, upstream.port), port, ["--upgrade-timeout", "1s"]);
    writeFileSync(`${dir}/hang`, "");
    old.proc.kill("SIGUSR2");
    await waitFor(() => old.stderrText.includes("upgrade failed"), 25_000, "the failure line");
    expect(old.stderrText).toContain("upgrade failed: the new process was not ready within 1000 ms; this process keeps serving");
    await using fresh = await dial(port);
    fresh.write("new");
    await waitFor(() => fresh.text() === "new", 5000, "a new session");
    const left = Bun.spawnSync(["pgrep", "-f", wrapper])
      .stdout.toString()
      .trim()
      .split("\n")
      .map(Number)
      .filter((pid) => pid > 0 && pid !== old.proc.pid);
    expect(left).toEqual([]);
  }, 30_000);

  test("POST /api/upgrade starts it; the targets' admin states carry over", async () => {
    await using upstream = listen(echo);
    const port = freePort();
    const admin = freePort();
    await using old = await serve(`${plain(port, upstream.port)}\n[admin]\nlisten = "${HOST}:${admin}"\n`, port, [], { TCPROUTER_ADMIN_TOKEN: "secret-token" });
    const auth = { authorization: "Bearer secret-token", "content-type": "application/json" };
    const target = `${HOST}:${upstream.port}`;
    const drained = await fetch(`http://${HOST}:${admin}/api/backends/app/targets/${target}/state`, {
      method: "POST",
      headers: auth,
      body: '{"state":"drain"}',
    });
    expect(drained.status).toBe(200);
    const started = await fetch(`http://${HOST}:${admin}/api/upgrade`, { method: "POST", headers: auth, body: "{}" });
    expect(started.status).toBe(202);
    expect(await started.json()).toEqual({ upgrade: "started", pid: old.proc.pid });
    let next: number | undefined;
    try {
      await waitFor(() => /upgrade: pid (\d+) took over/.test(old.stderrText), 15_000, "the take-over");
      next = Number(/upgrade: pid (\d+) took over/.exec(old.stderrText)![1]);
      await within(old.proc.exited, 10_000, "the old process to exit");
      await waitFor(async () => (await fetch(`http://${HOST}:${admin}/status`).catch(() => null))?.ok === true, 10_000, "the new admin listener");
      const status = (await (await fetch(`http://${HOST}:${admin}/status`)).json()) as { pid?: number; backends: { targets: { state: string }[] }[] };
      expect(status.backends[0]!.targets[0]!.state).toBe("drain");
    } finally {
      kill(next);
    }
  }, 30_000);
});
