/**
 * Bandwidth limits (upload_rate, download_rate, their _per_ip forms): a limited session moves
 * at its rate, bytes exact, with memory bounded as without limits; a client address shares one
 * bucket; a reload limits new sessions only.
 */
import { expect, test } from "bun:test";
import type { Socket } from "bun";
import { parseConfig } from "../../src/index.ts";
import { burstOf, limiters, rateLimits } from "../../src/proxy/rate.ts";
import { dial, freePort, hasCommand, HOST, listen, MiB, sink, slowReader, source, waitFor, within } from "../helpers/net.ts";
import { startRouter } from "../helpers/router.ts";

const MB = 1_000_000;

function routerToml(listener: string, target: string, backend = ""): string {
  return `[[listeners]]\nlisten = "${HOST}:0"\nbackend = "b"\n${listener}\n[backends.b]\ntargets = ["${target}"]\n${backend}\n`;
}

/** Bytes per second that `read()` grows by over `ms`, after `settle` ms (the buckets' bursts spent). */
async function rateOf(read: () => number, ms: number, settle = 300): Promise<number> {
  await Bun.sleep(settle);
  const before = read();
  const started = performance.now();
  await Bun.sleep(ms);
  return ((read() - before) * 1000) / (performance.now() - started);
}

/** A client that only counts what it reads, from `localAddress` (127.0.0.2, 127.0.0.3: other client addresses). */
async function counter(port: number, localAddress = HOST): Promise<{ bytes: number; socket: Socket<{ bytes: number }> }> {
  const state = { bytes: 0 };
  const socket = await Bun.connect({
    hostname: HOST,
    port,
    localAddress,
    data: state,
    socket: {
      binaryType: "buffer",
      data(s: Socket<{ bytes: number }>, chunk: Buffer) {
        s.data.bytes += chunk.length;
      },
      error() {},
    },
  } as unknown as Parameters<typeof Bun.connect<{ bytes: number }>>[0]);
  return {
    get bytes() {
      return state.bytes;
    },
    socket,
  };
}

function expectWithin(actual: number, wanted: number, share: number): void {
  expect(actual).toBeGreaterThan(wanted * (1 - share));
  expect(actual).toBeLessThan(wanted * (1 + share));
}

test("a direction without limits gets no limiter; each limit that is on is one bucket", () => {
  expect(rateLimits(undefined)).toBeNull();
  expect(rateLimits({ uploadRate: 0, downloadRate: 0, uploadRatePerIp: 0, downloadRatePerIp: 0, tcpKeepalive: null, tcpUserTimeout: 30_000 })).toBeNull();
  const listener = rateLimits({ uploadRate: 0, downloadRate: 4 * MB, uploadRatePerIp: 0, downloadRatePerIp: 0, tcpKeepalive: null, tcpUserTimeout: 0 });
  const [up, down] = limiters(listener, null, () => {
    throw new Error("the client address is read only for a _per_ip limit");
  });
  expect(up).toBeNull();
  expect(down).not.toBeNull();
  expect(burstOf(4 * MB)).toBe(200_000);
  expect(burstOf(100_000)).toBe(64 * 1024);
});

test("delivers an upload and a download exactly at upload_rate / download_rate (within 10 %)", async () => {
  const size = 8 * MiB;
  await using upstream = listen(sink);
  await using router = await startRouter(routerToml('upload_rate = "4MB"', upstream.address));
  await using client = await dial(router.port, { keep: false });
  const started = performance.now();
  const sent = client.stream(size, 3);
  const server = await upstream.peer(0);
  await within(sent, 10_000, "the upload");
  client.shutdown();
  await waitFor(() => server.ended, 10_000, "the upload to arrive");
  const seconds = (performance.now() - started) / 1000;
  expect(server.bytesIn).toBe(size);
  expect(server.hashIn.digest("hex")).toBe(client.hashOut.digest("hex"));
  // The first burst goes at once; the rest at the rate.
  expectWithin((size - burstOf(4 * MB)) / seconds, 4 * MB, 0.1);

  await using down = listen(source(size));
  await using router2 = await startRouter(routerToml('download_rate = "4MB"', down.address));
  const began = performance.now();
  await using reader = await dial(router2.port, { keep: false });
  await waitFor(() => reader.ended, 10_000, "the download");
  const took = (performance.now() - began) / 1000;
  expect(reader.bytesIn).toBe(size);
  expect(reader.hashIn.digest("hex")).toBe((await down.peer(0)).hashOut.digest("hex"));
  expectWithin((size - burstOf(4 * MB)) / took, 4 * MB, 0.1);
  reader.shutdown();
}, 20_000);

test.skipIf(!hasCommand("iperf3"))(
  "iperf3 through download_rate and upload_rate of 4MB measures 4 MB/s (within 10 %)",
  async () => {
    for (const direction of ["download", "upload"] as const) {
      const port = freePort();
      const server = Bun.spawn(["iperf3", "-s", "-1", "-p", String(port), "-B", HOST], { stdout: "ignore", stderr: "ignore" });
      try {
        // Not by connecting: `-1` serves one connection only.
        await waitFor(
          () =>
            Bun.spawnSync(["ss", "-Htln", `sport = :${port}`])
              .stdout.toString()
              .trim() !== "",
          5000,
          "iperf3 to listen",
        );
        await using router = await startRouter(routerToml(`${direction}_rate = "4MB"`, `${HOST}:${port}`), 3);
        const args = ["iperf3", "-c", HOST, "-p", String(router.port), "-t", "3", "-J", ...(direction === "download" ? ["-R"] : [])];
        const client = Bun.spawn(args, { stdout: "pipe", stderr: "ignore" });
        const report = JSON.parse(await new Response(client.stdout).text()) as { end: { sum_received: { bytes: number; seconds: number } } };
        const { bytes, seconds } = report.end.sum_received;
        expectWithin(bytes / seconds, 4 * MB, 0.1);
      } finally {
        server.kill();
        await server.exited;
      }
    }
  },
  30_000,
);

test("a stalled reader under a limit holds no more than the high-water mark and one read, then gets every byte", async () => {
  const size = 48 * MiB;
  await using upstream = listen(source(size));
  await using router = await startRouter(routerToml('download_rate = "200MB"', upstream.address));
  await using client = await dial(router.port, { ...slowReader, keep: false });
  const highWaterMark = 1024 * 1024; // the router's default
  await waitFor(() => router.stats().queuedBytes >= highWaterMark, 10_000, "the down pipe to fill");
  let peak = 0;
  for (let i = 0; i < 25; i++) {
    peak = Math.max(peak, router.stats().queuedBytes);
    await Bun.sleep(20);
  }
  expect(peak).toBeLessThanOrEqual(highWaterMark + 512 * 1024);
  client.resume();
  await waitFor(() => client.ended, 20_000, "every byte");
  expect(client.bytesIn).toBe(size);
  expect(client.hashIn.digest("hex")).toBe((await upstream.peer(0)).hashOut.digest("hex"));
  expect(router.stats().droppedBytes).toBe(0);
  client.shutdown();
}, 30_000);

test("download_rate_per_ip: sessions of one address share one rate, two addresses get one each", async () => {
  await using upstream = listen(source(256 * MiB));
  await using router = await startRouter(routerToml('download_rate_per_ip = "4MB"', upstream.address));
  const a = await counter(router.port);
  const b = await counter(router.port);
  try {
    const shared = await rateOf(() => a.bytes + b.bytes, 2000);
    expectWithin(shared, 4 * MB, 0.1);
    // Both sessions move (neither is starved).
    expect(a.bytes).toBeGreaterThan(MB);
    expect(b.bytes).toBeGreaterThan(MB);
  } finally {
    a.socket.terminate();
    b.socket.terminate();
  }
  const c = await counter(router.port, "127.0.0.2");
  const d = await counter(router.port, "127.0.0.3");
  try {
    let cBytes = 0;
    const both = await rateOf(() => c.bytes + d.bytes, 2000);
    cBytes = c.bytes;
    expectWithin(both, 8 * MB, 0.1);
    expectWithin(cBytes / (cBytes + d.bytes), 0.5, 0.15);
  } finally {
    c.socket.terminate();
    d.socket.terminate();
  }
}, 20_000);

test("a listener's and a backend's limits both apply: the lower one wins", async () => {
  await using upstream = listen(source(256 * MiB));
  await using router = await startRouter(routerToml('download_rate = "8MB"', upstream.address, 'download_rate = "4MB"'));
  const a = await counter(router.port);
  try {
    expectWithin(await rateOf(() => a.bytes, 1500), 4 * MB, 0.1);
  } finally {
    a.socket.terminate();
  }
}, 10_000);

test("a reload changes the rate of new sessions, not of open ones", async () => {
  await using upstream = listen(source(256 * MiB));
  const port = freePort();
  const toml = (rate: string) => routerToml(`download_rate = "${rate}"`, upstream.address).replace(`${HOST}:0`, `${HOST}:${port}`);
  await using router = await startRouter(toml("4MB"));
  const old = await counter(router.port);
  await Bun.sleep(300);
  router.reload(parseConfig(toml("8MB"), "toml"));
  const fresh = await counter(router.port);
  try {
    await Bun.sleep(300);
    const [old0, fresh0, started] = [old.bytes, fresh.bytes, performance.now()];
    await Bun.sleep(2000);
    const seconds = (performance.now() - started) / 1000;
    expectWithin((fresh.bytes - fresh0) / seconds, 8 * MB, 0.1);
    expectWithin((old.bytes - old0) / seconds, 4 * MB, 0.1);
  } finally {
    old.socket.terminate();
    fresh.socket.terminate();
  }
}, 15_000);
