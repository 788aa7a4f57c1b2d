/** The CLI, spawned: exit codes, one-line errors, the listening line, signals, --help. */
import { describe, expect, test } from "bun:test";
import { dial, echo, HOST, listen, run, spawnCli, waitFor } from "../helpers/net.ts";

const CLI = [process.execPath, "run", "src/cli.ts"];
/** Always bind port 0, so a test never takes the default 127.0.0.1:11000. */
const LISTEN = ["--listen", `${HOST}:0`];
const NO_TARGET = `${HOST}:1`;

/** stderr is exactly one log line at ERROR level whose message matches `message`, with no stack trace. */
function expectOneErrorLine(stderr: string, message: RegExp): void {
  const lines = stderr.trimEnd().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^\S+ ERROR /);
  expect(lines[0]).toMatch(message);
  expect(stderr).not.toMatch(/\n\s+at |Error:/);
}

describe("exits 1 with one line on stderr naming the problem", () => {
  test.each([
    ["missing --to", [...LISTEN], /--to is required/],
    ["--to without a value", [...LISTEN, "--to"], /--to is required/],
    ["a malformed target", [...LISTEN, "--to", "nope"], /to: "nope": expected host:port/],
    ["a target port out of range", [...LISTEN, "--to", `${HOST}:70000`], /to: "127\.0\.0\.1:70000": port 70000 is out of range \(1-65535\)/],
    ["a listen port out of range", ["--listen", `${HOST}:65536`, "--to", NO_TARGET], /listen: "127\.0\.0\.1:65536": port 65536 is out of range \(0-65535\)/],
    ["an unknown flag", [...LISTEN, "--to", NO_TARGET, "--bogus"], /unknown flag --bogus \(see --help\)/],
    ["an unknown flag with a value", [...LISTEN, "--to", NO_TARGET, "--idle=5s"], /unknown flag --idle \(see --help\)/],
    ["a bad duration", [...LISTEN, "--to", NO_TARGET, "--idle-timeout", "5x"], /--idle-timeout: "5x" is not a duration/],
    ["a negative duration", [...LISTEN, "--to", NO_TARGET, "--connect-timeout=-5s"], /--connect-timeout: "-5s" is not a duration/],
    ["a bad count", [...LISTEN, "--to", NO_TARGET, "--max-connections", "many"], /--max-connections: "many" is not a whole number/],
    ["a bad log level", [...LISTEN, "--to", NO_TARGET, "--log-level", "loud"], /--log-level \(loud\)\. Expected one of: error, warn, info, debug/],
    ["an unknown command", ["bogus", ...LISTEN, "--to", NO_TARGET], /Unknown command bogus/],
    [
      "a listen address not on this machine",
      ["--listen", "192.0.2.1:0", "--to", NO_TARGET],
      /cannot listen on 192\.0\.2\.1:0: address not available on this machine/,
    ],
    [
      "a unix listen path in a missing directory",
      ["--listen", "unix:/nonexistent-tcprouter-dir/x.sock", "--to", NO_TARGET],
      /cannot listen on unix:\/nonexistent-tcprouter-dir\/x\.sock: no such directory/,
    ],
  ] as const)(
    "%s",
    async (_, args, message) => {
      const { code, stdout, stderr } = await run([...CLI, ...args], 15_000);
      expect(code).toBe(1);
      expect(stdout).toBe("");
      expectOneErrorLine(stderr, message);
    },
    20_000,
  );

  test("an address already in use", async () => {
    await using taken = listen(echo);
    const { code, stdout, stderr } = await run([...CLI, "--listen", taken.address, "--to", NO_TARGET], 15_000);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expectOneErrorLine(stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${taken.port}: address already in use`));
  }, 20_000);
});

test("prints usage without colours on --help and exits 0", async () => {
  const { code, stdout, stderr } = await run([...CLI, "--help"], 15_000);
  expect(code).toBe(0);
  expect(stderr).toBe("");
  expect(stdout).not.toContain("\u001b[");
  // Trailing spaces are left out: citty pads the last column by its width with colour codes,
  // which differs with NO_COLOR / FORCE_COLOR and is invisible anyway.
  expect(stdout.replace(/ +$/gm, "")).toMatchSnapshot();
}, 20_000);

test("prints the version on --version", async () => {
  const { code, stdout } = await run([...CLI, "--version"], 15_000);
  expect(code).toBe(0);
  expect(stdout.trim()).toBe((await Bun.file(new URL("../../package.json", import.meta.url)).json()).version);
}, 20_000);

test("logs the listening line at info, forwards, and on SIGTERM exits 0 with a one-line summary", async () => {
  await using upstream = listen(echo);
  await using cli = spawnCli([...LISTEN, "--to", upstream.address]);
  const [, port, target] = await cli.stderrMatch(/ INFO listening on 127\.0\.0\.1:(\d+) → (\S+)\n/);
  expect(target).toBe(upstream.address);

  {
    await using client = await dial(Number(port));
    client.write("through the CLI");
    await waitFor(() => client.bytesIn === 15, 5000, "the echo");
    expect(client.text()).toBe("through the CLI");
    client.shutdown();
    await waitFor(() => client.closed, 5000, "the session to close");
  }

  cli.proc.kill("SIGTERM");
  expect(await cli.exited()).toBe(0);
  const summaries = cli.stderrText.split("\n").filter((line) => line.includes("stopped after"));
  expect(summaries).toHaveLength(1);
  expect(summaries[0]).toMatch(/ INFO stopped after \d+ ms: 0 drained, 0 closed at the deadline; 1 sessions, 15 B up, 15 B down, 0 connect failures$/);
  expect(cli.stderrText).not.toMatch(/ERROR|WARN|\n\s+at /);
  expect(cli.stdoutText).toBe("");
}, 20_000);

test("on SIGTERM closes a session still open at the drain timeout, then exits 0", async () => {
  await using upstream = listen(echo);
  await using cli = spawnCli([...LISTEN, "--to", upstream.address, "--drain-timeout", "300ms"]);
  const [, port] = await cli.stderrMatch(/listening on 127\.0\.0\.1:(\d+) /);
  await using client = await dial(Number(port));
  client.write("stay");
  await waitFor(() => client.bytesIn === 4, 5000, "the echo");

  cli.proc.kill("SIGTERM");
  await cli.stderrMatch(/SIGTERM: stopped accepting, draining 1 open session\n/);
  expect(await cli.exited()).toBe(0);
  expect(cli.stderrText).toMatch(/stopped after \d+ ms: 0 drained, 1 closed at the deadline; 1 sessions, 4 B up, 4 B down/);
  await waitFor(() => client.hungUp, 5000, "the client to be closed");
}, 20_000);

// JSON logs used to carry only a message string: a log pipeline had to parse the text to
// learn which listener or signal a line was about.
test("writes one JSON object per line with --log-format json, with the event's fields beside the message", async () => {
  await using cli = spawnCli([...LISTEN, "--to", NO_TARGET, "--log-format", "json"]);
  await cli.stderrMatch(/listening on/);
  cli.proc.kill("SIGTERM");
  expect(await cli.exited()).toBe(0);
  const lines = cli.stderrText
    .trimEnd()
    .split("\n")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  for (const line of lines) expect(typeof line.time).toBe("string");
  const address = String(lines[0]!.address);
  expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
  expect(lines[0]).toEqual({
    time: expect.any(String),
    level: "info",
    message: `listening on ${address} → 127.0.0.1:1`,
    listener: "127.0.0.1:0",
    address,
    mode: "tcp",
    backend: "default",
    routes: 0,
  });
  expect(lines.find((line) => String(line.message).startsWith("SIGTERM:"))).toEqual({
    time: expect.any(String),
    level: "info",
    message: "SIGTERM: stopped accepting, draining 0 open sessions",
    signal: "SIGTERM",
    open: 0,
  });
  expect(lines.find((line) => String(line.message).startsWith("stopped after"))).toMatchObject({
    signal: "SIGTERM",
    drained: 0,
    closed: 0,
    totalSessions: 0,
    refused: 0,
  });
}, 20_000);

test("refuses the connection over --max-connections at once", async () => {
  await using upstream = listen(echo);
  await using cli = spawnCli([...LISTEN, "--to", upstream.address, "--max-connections", "1"]);
  const [, port] = await cli.stderrMatch(/listening on 127\.0\.0\.1:(\d+) /);
  await using first = await dial(Number(port));
  first.write("1");
  await waitFor(() => first.bytesIn === 1, 5000, "the first echo");
  await using second = await dial(Number(port));
  await waitFor(() => second.hungUp, 5000, "the second connection to be closed");
  expect(second.bytesIn).toBe(0);
  await cli.stderrMatch(/ WARN .*max_connections 1 reached/);
}, 20_000);

// Regression: the `listening on` lines were paired with the config's listeners by index, but
// the handle lists TCP listeners before UDP ones: a UDP listener written first showed the TCP
// listener's address with the UDP listener's backend.
test("each listening line names its own listener's backend, a UDP listener written first included", async () => {
  const { mkdtempSync, rmSync, writeFileSync } = await import("node:fs");
  const { freePort } = await import("../helpers/net.ts");
  const dir = mkdtempSync("/tmp/tcprouter-cli-");
  try {
    const [udpPort, tcpPort] = [freePort(), freePort()];
    writeFileSync(
      `${dir}/c.toml`,
      `[[listeners]]\nlisten = "${HOST}:${udpPort}"\nprotocol = "udp"\nbackend = "dns"\n[[listeners]]\nlisten = "${HOST}:${tcpPort}"\nbackend = "app"\n[backends.dns]\ntargets = ["${HOST}:53"]\n[backends.app]\ntargets = ["${HOST}:6379"]\n`,
    );
    await using cli = spawnCli(["--config", `${dir}/c.toml`]);
    await cli.stderrMatch(new RegExp(`listening on ${HOST}:${tcpPort} → backend app`));
    await cli.stderrMatch(new RegExp(`listening on ${HOST}:${udpPort} → backend dns`));
    expect(cli.stderrText).not.toContain(`${HOST}:${tcpPort} → backend dns`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 20_000);
