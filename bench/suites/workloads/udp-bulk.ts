/**
 * Bulk UDP: `iperf3 -u` at a fixed rate through a contender; datagrams/s the server received
 * and the loss %. iperf3 -u also opens a TCP control connection to the same port, so the
 * contender must forward TCP on that port too. The server is `iperf3 -s -1` (one test, then it
 * exits), a fresh one per sample on the same port, so no test sees the state of the last one.
 */
import { readFileSync } from "node:fs";
import { HOST } from "../../runner/net.ts";
import { run, startServer } from "../../runner/procs.ts";

/** True while something listens on 127.0.0.1:`port` over TCP (from /proc/net/tcp, without connecting). */
function tcpListening(port: number): boolean {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return readFileSync("/proc/net/tcp", "utf8")
    .split("\n")
    .some((line) => {
      const fields = line.trim().split(/\s+/);
      return fields[1] === local && fields[3] === "0A";
    });
}

export interface UdpBulkResult {
  /** Datagrams the server received per second (sent − lost, ÷ the test's seconds). */
  datagramsPerSecond: number;
  lossPercent: number;
  packets: number;
  lostPackets: number;
  seconds: number;
  /** Payload Mbit/s the server received. */
  mbitReceived: number;
}

interface UdpSum {
  seconds?: number;
  packets?: number;
  lost_packets?: number;
  lost_percent?: number;
  bits_per_second?: number;
}

interface IperfUdpJson {
  error?: string;
  end?: { sum?: UdpSum; sum_received?: UdpSum };
}

/**
 * One sample: `iperf3 -s -1 -p TARGET -B 127.0.0.1`, then `iperf3 -c 127.0.0.1 -p PORT -u -b
 * RATE -l LEN -t SECONDS -J` through the contender on `port`.
 */
export async function runUdpBulk(port: number, targetPort: number, seconds: number, rate: string, length: number): Promise<UdpBulkResult> {
  const server = startServer("iperf3-udp", ["iperf3", "-s", "-1", "-p", String(targetPort), "-B", HOST]);
  try {
    const deadline = Date.now() + 10_000;
    while (!tcpListening(targetPort)) {
      if (server.proc.exitCode !== null) throw new Error(`iperf3 -s exited (${server.proc.exitCode}) before listening on ${targetPort}`);
      if (Date.now() > deadline) throw new Error(`iperf3 -s not listening on ${targetPort} after 10 s`);
      await Bun.sleep(20);
    }
    const argv = ["iperf3", "-c", HOST, "-p", String(port), "-u", "-b", rate, "-l", String(length), "-t", String(seconds), "-J", "--connect-timeout", "3000"];
    const r = await run(argv, (seconds + 20) * 1000);
    if (r.timedOut) throw new Error(`iperf3 -u timed out after ${seconds + 20} s`);
    let json: IperfUdpJson;
    try {
      json = JSON.parse(r.stdout) as IperfUdpJson;
    } catch {
      throw new Error(`iperf3 -u printed no JSON (${r.code}): ${r.stderr.trim().slice(-300)}`);
    }
    if (json.error) throw new Error(`iperf3 -u: ${json.error}`);
    // the receiver's view (iperf3 ≥ 3.11 has sum_received for UDP; older ones only sum, with the server's loss)
    const sum = json.end?.sum_received?.packets ? json.end.sum_received : json.end?.sum;
    if (!sum?.packets || sum.seconds === undefined) throw new Error("iperf3 -u: no packet counts in its JSON");
    const lost = sum.lost_packets ?? 0;
    const received = sum.packets - lost;
    return {
      datagramsPerSecond: received / sum.seconds,
      lossPercent: sum.lost_percent ?? (lost / sum.packets) * 100,
      packets: sum.packets,
      lostPackets: lost,
      seconds: sum.seconds,
      mbitReceived: (received * length * 8) / sum.seconds / 1e6,
    };
  } finally {
    // -1: it exits after the test; stop() waits for that (or ends it)
    await Promise.race([server.proc.exited, Bun.sleep(3000)]);
    await server.stop();
  }
}
