/**
 * tcprouter bench, the one entry point: picks the suite, which parses its own flags and runs.
 *
 *   bun run bench/run.ts [--suite redis|backends|tls|observability|balancer|failover|upgrade|udp|quic|syscalls|instructions] [--smoke] [--rounds N] [--markdown] [--json] …
 *   npm run bench -- --suite tls --smoke
 *
 * Everything a suite starts is stopped on exit, on error and on Ctrl-C (runner/procs.ts).
 * Layout and method: bench/README.md.
 */
import { COMMON_HELP, fail } from "./runner/flags.ts";
import { runBench } from "./runner/procs.ts";

interface SuiteModule {
  HELP: string;
  main(args: string[]): Promise<void>;
}

/** Each suite, loaded only when it runs (the balancer one imports src/). */
const SUITES: Record<string, { about: string; load: () => Promise<SuiteModule> }> = {
  redis: { about: "Redis and iperf3 directly and through tcprouter, HAProxy, nginx (the default)", load: () => import("./suites/redis.ts") },
  backends: { about: "three Redis servers behind one listener: tcprouter, HAProxy, bun-floor per balance", load: () => import("./suites/backends.ts") },
  tls: { about: "new TLS sessions/s through SNI passthrough, and TLS bulk: tcprouter, HAProxy, bun-floor", load: () => import("./suites/tls.ts") },
  observability: { about: "tcprouter with metrics and the access log off and on", load: () => import("./suites/observability.ts") },
  balancer: { about: "picks/s of each balancer, in-process, no sockets", load: () => import("./suites/balancer.ts") },
  failover: {
    about: "Redis primary failover under Sentinel: tcprouter (role checks, Sentinel source) vs HAProxy tcp-check",
    load: () => import("./suites/failover.ts"),
  },
  upgrade: {
    about: "upgrade in place under load: tcprouter SIGUSR2, HAProxy master-worker reload, nginx binary upgrade",
    load: () => import("./suites/upgrade.ts"),
  },
  quic: { about: "QUIC (HTTP/3) handshakes/s through a UDP listener in sni mode against the server directly (ngtcp2)", load: () => import("./suites/quic.ts") },
  syscalls: {
    about: "system calls per request of each proxy (strace -c), and with --perf its CPU samples per part (perf record)",
    load: () => import("./suites/syscalls.ts"),
  },
  instructions: {
    about: "user-space instructions per new connection of each Bun-based proxy (valgrind's callgrind), and where they run",
    load: () => import("./suites/instructions.ts"),
  },
  udp: { about: "DNS queries/s, bulk UDP and memory per idle flow: direct, tcprouter UDP listeners, nginx stream UDP", load: () => import("./suites/udp.ts") },
};
/** `--suite main`: the redis suite's name before there were suites/. */
const ALIASES: Record<string, string> = { main: "redis" };

const OVERVIEW = `bun run bench/run.ts [--suite NAME] [flags]   (also: npm run bench -- [--suite NAME] [flags])
  --suite NAME          the suite to run (default: redis):
${Object.entries(SUITES)
  .map(([name, suite]) => `                          ${name.padEnd(14)} ${suite.about}`)
  .join("\n")}
  every suite takes --rounds N and:
${COMMON_HELP}  bun run bench/run.ts --suite NAME --help lists a suite's own flags.

`;

/** The suite named by `--suite NAME` / `--suite=NAME` (redis when absent), and the other arguments. */
function pickSuite(argv: string[]): { name: string; args: string[]; named: boolean } {
  const args: string[] = [];
  let name: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      args.push(...argv.slice(i));
      break;
    }
    if (arg === "--suite" || arg.startsWith("--suite=")) {
      const value = arg === "--suite" ? argv[++i] : arg.slice("--suite=".length);
      if (value === undefined || value === "" || value.startsWith("-")) fail(`--suite: expected a name (${Object.keys(SUITES).join(", ")})`);
      if (name !== undefined && name !== value) fail(`--suite: given twice (${name}, ${value})`);
      name = value;
      continue;
    }
    args.push(arg);
  }
  const resolved = ALIASES[name ?? "redis"] ?? name ?? "redis";
  if (!(resolved in SUITES)) fail(`--suite: unknown "${name}" (one of ${Object.keys(SUITES).join(", ")})`);
  return { name: resolved, args, named: name !== undefined };
}

const { name, args, named } = pickSuite(process.argv.slice(2));
if (!named && (args.includes("--help") || args.includes("-h"))) process.stdout.write(OVERVIEW);
const suite = await SUITES[name]!.load();
await runBench(() => suite.main(args));
