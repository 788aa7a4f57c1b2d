/**
 * Bulk throughput: one iperf3 TCP stream for a fixed time through the contender (its control
 * connection goes through it too). Forward = client sends; reverse (-R) = server sends.
 */
import { HOST, freePort, waitForPort } from "../../runner/net.ts";
import { run, startServer, type Server } from "../../runner/procs.ts";

/** Starts `iperf3 -s` bound to 127.0.0.1 on a free port. */
export async function startIperf(): Promise<{ server: Server; port: number }> {
  const port = await freePort();
  const server = startServer("iperf3", ["iperf3", "-s", "-B", HOST, "-p", String(port)]);
  await waitForPort(port, 10_000, () => server.proc.exitCode === null);
  return { server, port };
}

interface IperfJson {
  error?: string;
  end?: { sum_received?: { bits_per_second?: number } };
}

/** Gbit/s received over `seconds` through `port`; `reverse` adds -R. Retries once if busy. */
export async function runBulk(port: number, seconds: number, reverse: boolean): Promise<number> {
  try {
    return await runIperf(port, seconds, reverse);
  } catch (err) {
    // iperf3 -s serves one test at a time and may still be tearing down the previous one
    if (!/busy/i.test((err as Error).message)) throw err;
    await Bun.sleep(2000);
    return runIperf(port, seconds, reverse);
  }
}

async function runIperf(port: number, seconds: number, reverse: boolean): Promise<number> {
  const argv = ["iperf3", "-c", HOST, "-p", String(port), "-t", String(seconds), "-J", "--connect-timeout", "3000"];
  if (reverse) argv.push("-R");
  const r = await run(argv, (seconds + 20) * 1000);
  if (r.timedOut) throw new Error(`iperf3 timed out after ${seconds + 20} s`);
  let json: IperfJson;
  try {
    json = JSON.parse(r.stdout) as IperfJson;
  } catch {
    throw new Error(`iperf3 printed no JSON (${r.code}): ${r.stderr.trim().slice(-300)}`);
  }
  const bps = json.end?.sum_received?.bits_per_second;
  if (json.error || !bps) throw new Error(`iperf3: ${json.error ?? "no sum_received"}`);
  return bps / 1e9;
}
