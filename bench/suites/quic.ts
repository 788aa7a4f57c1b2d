/**
 * QUIC (HTTP/3) handshakes through tcprouter's SNI router against the server directly.
 *
 *   bun run bench/run.ts --suite quic [--rounds N] [--seconds N] [--concurrency N] [--smoke] [--json] [--markdown]
 *
 * ngtcp2's gtlsserver serves a small file; `--concurrency` loops of ngtcp2's gtlsclient each
 * fetch it again and again for `--seconds`: every fetch is a new QUIC connection (a full
 * Initial → handshake → request), so fetches/s is handshakes/s. gtlsclient given 127.0.0.1
 * sends "localhost" as its server name, which the router's route matches. Contenders:
 * `direct` (the server's port) and `tcprouter` (a UDP listener, mode = "sni", one route).
 * Rounds interleave the two, the start rotated each round; medians, min..max and the ratio to
 * direct, and the router's CPU µs per handshake (/proc/PID/stat). A client process per fetch
 * costs the same on both sides: the ratio, not the absolute rate, is the figure.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../contenders/launch.ts";
import { fail, parseBenchFlags, positiveInt, say } from "../runner/flags.ts";
import { HOST } from "../runner/net.ts";
import { CLK_TCK, cpuTicks, run, startServer, stop, workDir } from "../runner/procs.ts";
import { publish } from "../report/results.ts";
import { median } from "../report/table.ts";

export const HELP = `bun run bench/run.ts --suite quic [flags]
  --rounds N            rounds, interleaved (default 3; smoke 1)
  --seconds N           seconds per sample (default 8; smoke 2)
  --concurrency N       fetch loops in flight (default 4)`;

const CERTS = join(ROOT, "test/fixtures/tls/certs");
const gtlsserver = Bun.which("gtlsserver", { PATH: `${process.env.PATH}:/usr/sbin` });
const gtlsclient = Bun.which("gtlsclient");

async function udpPort(): Promise<number> {
  const probe = await Bun.udpSocket({ hostname: HOST, port: 0 });
  const port = probe.port;
  probe.close();
  return port;
}

/** One gtlsclient fetch through `port`; true when it ended well. */
async function fetchOnce(port: number, download: string): Promise<boolean> {
  const argv = [gtlsclient!, "-q", "--exit-on-all-streams-close", "--timeout=3s", `--download=${download}`, HOST, String(port), `https://localhost/file`];
  const result = await run(argv, 10_000);
  return result.code === 0;
}

/** `concurrency` loops fetching for `seconds`; handshakes per second, and failures. */
async function sample(port: number, seconds: number, concurrency: number, dir: string): Promise<{ rate: number; failed: number }> {
  const until = performance.now() + seconds * 1000;
  let done = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, n) => {
      const download = join(dir, `out-${n}`);
      mkdirSync(download, { recursive: true });
      while (performance.now() < until) {
        if (await fetchOnce(port, download)) done++;
        else failed++;
      }
    }),
  );
  return { rate: done / seconds, failed };
}

export async function main(args: string[]): Promise<void> {
  const opts = parseBenchFlags("quic", args, { seconds: { type: "string" }, concurrency: { type: "string" } }, HELP) as {
    smoke?: boolean;
    rounds?: string;
    seconds?: string;
    concurrency?: string;
    json?: boolean;
    markdown?: boolean;
  };
  if (gtlsserver === null || gtlsclient === null) fail("quic: gtlsserver and gtlsclient are needed (apt-get install ngtcp2-server ngtcp2-client)");
  const smoke = opts.smoke === true;
  const rounds = positiveInt("rounds", opts.rounds, 3, 1, smoke);
  const seconds = positiveInt("seconds", opts.seconds, 8, 2, smoke);
  const concurrency = positiveInt("concurrency", opts.concurrency, 4, 2, smoke);
  const dir = workDir();
  const htdocs = join(dir, "htdocs");
  mkdirSync(htdocs, { recursive: true });
  writeFileSync(join(htdocs, "file"), "hello over HTTP/3\n");

  const serverPort = await udpPort();
  const server = startServer("gtlsserver", [gtlsserver, "-q", "-d", htdocs, HOST, String(serverPort), `${CERTS}/localhost.key`, `${CERTS}/localhost.pem`]);
  const routerPort = await udpPort();
  const config = join(dir, "quic.toml");
  writeFileSync(
    config,
    `[[listeners]]\nname = "h3"\nlisten = "${HOST}:${routerPort}"\nprotocol = "udp"\nmode = "sni"\nidle_timeout = "5s"\n[[listeners.routes]]\nserver_names = ["localhost"]\nbackend = "h3"\n[backends.h3]\ntargets = ["${HOST}:${serverPort}"]\n`,
  );
  const router = startServer("tcprouter", [process.execPath, "run", join(ROOT, "src/cli.ts"), "--config", config, "--log-level", "warn"]);
  try {
    await Bun.sleep(1000);
    // Correctness first: the file comes back through both.
    for (const [name, port] of [
      ["direct", serverPort],
      ["tcprouter", routerPort],
    ] as const) {
      mkdirSync(join(dir, `check-${name}`), { recursive: true });
      if (!(await fetchOnce(port, join(dir, `check-${name}`)))) fail(`quic: ${name}: gtlsclient did not fetch the file`);
      const body = await Bun.file(join(dir, `check-${name}`, "file")).text();
      if (body !== "hello over HTTP/3\n") fail(`quic: ${name}: wrong body ${JSON.stringify(body)}`);
    }
    const rates: Record<string, number[]> = { direct: [], tcprouter: [] };
    const cpu: number[] = [];
    let failures = 0;
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? (["direct", "tcprouter"] as const) : (["tcprouter", "direct"] as const);
      for (const name of order) {
        const before = cpuTicks(router.pid);
        const result = await sample(name === "direct" ? serverPort : routerPort, seconds, concurrency, dir);
        const after = cpuTicks(router.pid);
        rates[name]!.push(result.rate);
        failures += result.failed;
        if (name === "tcprouter" && result.rate > 0) {
          const ticks = after.user + after.system - before.user - before.system;
          cpu.push(((ticks / CLK_TCK) * 1e6) / (result.rate * seconds));
        }
        say(`round ${round + 1} ${name}: ${result.rate.toFixed(1)} handshakes/s${result.failed > 0 ? `, ${result.failed} failed` : ""}`);
      }
    }
    const direct = median(rates.direct!);
    const routed = median(rates.tcprouter!);
    const ratio = direct !== null && routed !== null && direct > 0 ? routed / direct : null;
    const date = new Date().toISOString();
    const lines = [
      `QUIC handshakes/s (gtlsclient fetches, ${concurrency} loops, ${seconds} s × ${rounds} rounds): direct ${direct?.toFixed(1)}, tcprouter ${routed?.toFixed(1)} (${ratio?.toFixed(3)}× direct); tcprouter CPU ${median(cpu)?.toFixed(0)} µs per handshake; ${failures} failed fetches`,
    ];
    for (const line of lines) process.stdout.write(`${line}\n`);
    publish(
      {
        result: { date, rounds, seconds, concurrency, rates, cpuMicrosPerHandshake: cpu, ratio, failures },
        text: lines.join("\n"),
        markdown: `| contender | handshakes/s (median) | vs direct |\n|---|---:|---:|\n| direct | ${direct?.toFixed(1)} | 1.000 |\n| tcprouter (mode = "sni") | ${routed?.toFixed(1)} | ${ratio?.toFixed(3)} |\n`,
      } as never,
      { json: opts.json === true, markdown: opts.markdown === true, smoke },
      "quic",
    );
    if (failures > 0 && smoke) fail(`quic: ${failures} fetches failed`);
  } finally {
    await stop(router.proc);
    await stop(server.proc);
  }
}
