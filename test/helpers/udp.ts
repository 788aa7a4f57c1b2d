/**
 * UDP peers on loopback for the UDP listener tests: a target that answers each datagram (by
 * default with a tag in front, so a test sees which target answered; it can also stay silent
 * or answer several times), a client socket connected to the router with a queue of what it
 * received, a real dnsmasq that answers one name with a fixed address, and `dig`. All close
 * with `await using`; processes are stopped by their PID.
 */
import type { udp } from "bun";
import { hasDnsmasq, startDnsmasq } from "./dnsmasq.ts";
import { HOST, run, spawn, waitFor } from "./net.ts";

export interface UdpTarget extends AsyncDisposable {
  port: number;
  /** `127.0.0.1:PORT`. */
  address: string;
  /** Every datagram it received, with the sender's port. */
  received: { data: Buffer; port: number }[];
  /** What it answers a datagram with: a list of datagrams (empty: silence). Changeable. */
  answer: (data: Buffer) => Buffer[];
  close(): void;
}

/** A target that answers `tag + datagram` (or what `answer` says). */
export async function udpTarget(tag = "", answer?: (data: Buffer) => Buffer[]): Promise<UdpTarget> {
  const received: { data: Buffer; port: number }[] = [];
  const target: Partial<UdpTarget> = {
    received,
    answer: answer ?? ((data) => [Buffer.concat([Buffer.from(tag), data])]),
  };
  const socket = await Bun.udpSocket({
    hostname: HOST,
    port: 0,
    binaryType: "buffer",
    socket: {
      data(s, data, port, address) {
        received.push({ data, port });
        for (const reply of target.answer!(data)) s.send(reply, port, address);
      },
    },
  });
  target.port = socket.port;
  target.address = `${HOST}:${socket.port}`;
  target.close = () => socket.close();
  target[Symbol.asyncDispose] = async () => socket.close();
  return target as UdpTarget;
}

export interface UdpClient extends AsyncDisposable {
  /** Its own port (the flow's key at the router, with 127.0.0.1). */
  port: number;
  send(data: Uint8Array | string): void;
  /** The next datagram received (in order), or an error after `ms`. */
  next(ms?: number): Promise<Buffer>;
  /** Datagrams received and not taken by `next` yet. */
  readonly queue: Buffer[];
  /** Resolves true if nothing arrives within `ms`. */
  silent(ms: number): Promise<boolean>;
  close(): void;
}

/** A client socket connected to `port` on 127.0.0.1. */
export async function udpClient(port: number): Promise<UdpClient> {
  const queue: Buffer[] = [];
  const socket: udp.ConnectedSocket<"buffer"> = await Bun.udpSocket({
    hostname: HOST,
    port: 0,
    binaryType: "buffer",
    connect: { hostname: HOST, port },
    socket: {
      data(_s, data) {
        queue.push(data);
      },
    },
  });
  return {
    port: socket.port,
    queue,
    send: (data) => void socket.send(typeof data === "string" ? Buffer.from(data) : data),
    async next(ms = 2000) {
      await waitFor(() => queue.length > 0, ms, "a datagram");
      return queue.shift()!;
    },
    async silent(ms) {
      const before = queue.length;
      await Bun.sleep(ms);
      return queue.length === before;
    },
    close: () => socket.close(),
    async [Symbol.asyncDispose]() {
      socket.close();
    },
  };
}

export function hasDnsTools(): boolean {
  return hasDnsmasq() && Bun.which("dig") !== null;
}

export interface DnsTarget extends AsyncDisposable {
  port: number;
  address: string;
  /** SIGTERM, and wait until it is gone: its port answers ICMP port unreachable from then on. */
  stop(): Promise<void>;
}

/** dnsmasq on 127.0.0.1 answering `name` (and names under it) with `ip`, nothing else; no upstream, no daemon. */
export async function dnsTarget(name: string, ip: string): Promise<DnsTarget> {
  return startDnsmasq([`--address=/${name}/${ip}`]);
}

/** `dig @127.0.0.1 -p PORT NAME +short +tries=1 +time=2`: the answer lines ("" when none came). */
export async function dig(port: number, name: string): Promise<string> {
  const result = await run(["dig", `@${HOST}`, "-p", String(port), name, "+short", "+tries=1", "+time=2"], 10_000);
  return result.code === 0 ? result.stdout.trim() : "";
}

/** A DNS query for `name` (type A) with this ID, as bytes; its hex is what a UDP health check sends. */
export function dnsQuery(name: string, id = 0x4a4a): Buffer {
  const labels = name.split(".").flatMap((label) => [label.length, ...Buffer.from(label)]);
  return Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, 1, 0, 1]);
}

export function hasQuicTools(): boolean {
  return Bun.which("gtlsserver", { PATH: `${process.env.PATH}:/usr/sbin` }) !== null && Bun.which("gtlsclient") !== null;
}

export interface QuicServer extends AsyncDisposable {
  port: number;
  address: string;
}

/** ngtcp2's gtlsserver (HTTP/3) on 127.0.0.1 serving `htdocs` with this key and certificate. */
export async function quicServer(htdocs: string, key: string, cert: string): Promise<QuicServer> {
  const binary = Bun.which("gtlsserver", { PATH: `${process.env.PATH}:/usr/sbin` }) ?? "gtlsserver";
  for (let attempt = 0; ; attempt++) {
    const probe = await Bun.udpSocket({ hostname: HOST, port: 0 });
    const port = probe.port;
    probe.close();
    const child = spawn([binary, "-q", "-d", htdocs, HOST, String(port), key, cert]);
    await waitFor(() => /document root/.test(child.stdoutText + child.stderrText) || child.proc.exitCode !== null, 5000, "gtlsserver to start");
    if (child.proc.exitCode === null) return { port, address: `${HOST}:${port}`, [Symbol.asyncDispose]: () => child[Symbol.asyncDispose]() };
    if (attempt >= 4) throw new Error(`gtlsserver did not start: ${child.stderrText}`);
  }
}

/**
 * gtlsclient asking `https://NAME/PATH` through 127.0.0.1:`port`; the body is saved in
 * `download`. Returns its exit code. ngtcp2 0.12's client sends "localhost" as SNI for an IP
 * host and ignores --sni, so it is given NAME as its host, and NAME resolves to 127.0.0.1
 * through an /etc/hosts bind-mounted in a mount namespace of its own (`unshare -m`: nothing
 * changes outside that process). `hostsDir` holds that file.
 */
export async function quicFetch(port: number, name: string, path: string, download: string, hostsDir: string, timeout = "3s"): Promise<number> {
  const hosts = `${hostsDir}/hosts-${name}`;
  await Bun.write(hosts, `127.0.0.1 ${name}\n`);
  const client = [
    "gtlsclient",
    "-q",
    "--exit-on-all-streams-close",
    `--timeout=${timeout}`,
    `--download=${download}`,
    name,
    String(port),
    `https://${name}${path}`,
  ];
  const script = `mount --bind "$0" /etc/hosts && exec "$@"`;
  const result = await run(["unshare", "-m", "sh", "-c", script, hosts, ...client], 15_000);
  return result.code;
}

/** Whether this process may make a mount namespace and bind-mount in it (quicFetch needs it). */
export async function canUnshareMounts(): Promise<boolean> {
  if (Bun.which("unshare") === null) return false;
  const result = await run(["unshare", "-m", "sh", "-c", "mount --bind /etc/hosts /etc/hosts"], 5000).catch(() => ({ code: 1 }));
  return result.code === 0;
}
