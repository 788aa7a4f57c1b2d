/**
 * UDP peers on loopback for the UDP listener tests: a target that answers each datagram (by
 * default with a tag in front, so a test sees which target answered; it can also stay silent
 * or answer several times), and a client socket connected to the router with a queue of what
 * it received. Both close with `await using`.
 */
import type { udp } from "bun";
import { HOST, waitFor } from "./net.ts";

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
