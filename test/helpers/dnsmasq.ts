/**
 * A real dnsmasq on 127.0.0.1 for discovery tests: local records only (`--srv-host`,
 * `--host-record`, an `--addn-hosts` file) for names under `.internal`, TTL 1 s, no upstream,
 * no daemon. `restart(args)`
 * runs it again on the same port with other records (dnsmasq re-reads only its hosts files on
 * SIGHUP, not `--srv-host`); `hup()` makes it re-read the hosts file. Stopped by its PID.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freeFixedPort } from "../../bench/runner/net.ts";
import { type Child, HOST, spawn, within } from "./net.ts";

export interface Dnsmasq extends AsyncDisposable {
  /** The UDP (and TCP) port it answers on. */
  port: number;
  /** `127.0.0.1:PORT`, for `dns_servers`. */
  address: string;
  /** The `--addn-hosts` file (`IP name` lines), re-read on `hup()`. */
  hostsFile: string;
  /** Writes the hosts file and sends SIGHUP. */
  hup(hosts: string): Promise<void>;
  /** SIGTERM, and wait until it is gone: its port answers ICMP port unreachable from then on. */
  stop(): Promise<void>;
  /** Stops it and starts it again on the same port with these record arguments. */
  restart(records: string[]): Promise<void>;
}

export function hasDnsmasq(): boolean {
  return Bun.which("dnsmasq") !== null || Bun.which("dnsmasq", { PATH: "/usr/sbin:/sbin" }) !== null;
}

const BINARY = () => Bun.which("dnsmasq") ?? Bun.which("dnsmasq", { PATH: "/usr/sbin:/sbin" }) ?? "dnsmasq";

/** Starts dnsmasq with `records` (`--srv-host=…`, `--host-record=…`) and `hosts` in its addn-hosts file. */
export async function startDnsmasq(records: string[], hosts = ""): Promise<Dnsmasq> {
  const dir = mkdtempSync(join(tmpdir(), "tcprouter-dnsmasq-"));
  const hostsFile = join(dir, "hosts");
  writeFileSync(hostsFile, hosts);
  let child: Child | null = null;
  let port = 0;

  const run = async (args: string[]): Promise<void> => {
    const started = spawn([
      BINARY(),
      "--no-daemon",
      "--no-resolv",
      "--no-hosts",
      `--port=${port}`,
      `--listen-address=${HOST}`,
      "--bind-interfaces",
      "--conf-file=/dev/null",
      "--pid-file=",
      "--local-ttl=1",
      // answer for *.internal itself: NODATA for AAAA of an IPv4-only name, NXDOMAIN for an
      // unknown one (without it, dnsmasq with no upstream answers REFUSED)
      "--local=/internal/",
      `--addn-hosts=${hostsFile}`,
      "--log-facility=-",
      ...args,
    ]);
    await started.stderrMatch(/started, version|failed|FAILED|illegal|bad /i, 5000);
    if (!/started, version/.test(started.stderrText)) {
      await started[Symbol.asyncDispose]();
      throw new Error(`dnsmasq did not start: ${started.stderrText}`);
    }
    child = started;
  };
  const stop = async (): Promise<void> => {
    const running = child as Child | null;
    child = null;
    if (running === null) return;
    running.proc.kill("SIGTERM");
    await within(running.proc.exited, 5000, `dnsmasq ${running.proc.pid} to exit`);
  };

  for (let attempt = 0; ; attempt++) {
    port = await freeFixedPort(); // below the ephemeral range: dnsmasq's bind fails on a port in TIME_WAIT
    try {
      await run(records);
      break;
    } catch (error) {
      if (attempt >= 4) {
        rmSync(dir, { recursive: true, force: true });
        throw error;
      }
    }
  }
  return {
    port,
    address: `${HOST}:${port}`,
    hostsFile,
    async hup(text: string) {
      writeFileSync(hostsFile, text);
      (child as Child | null)?.proc.kill("SIGHUP");
    },
    stop,
    async restart(next: string[]) {
      await stop();
      await run(next);
    },
    async [Symbol.asyncDispose]() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
