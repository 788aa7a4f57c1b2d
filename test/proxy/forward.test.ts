/** Bytes through the forwarder: exact, in order, in both directions, at volume. */
import { expect, test } from "bun:test";
import { bulkEcho, dial, echo, listen, MiB, patternBytes, sha256, sink, source, unacceptingListener, waitFor, within } from "../helpers/net.ts";
import { startForward } from "../helpers/router.ts";

test("echoes a request through the forwarder byte for byte", async () => {
  await using upstream = listen(echo);
  await using fwd = await startForward({ to: upstream.address });
  await using client = await dial(fwd.port);

  client.write("hello, upstream\r\n");
  await waitFor(() => client.bytesIn >= 17, 5000, "the echo");
  expect(client.text()).toBe("hello, upstream\r\n");

  const payload = patternBytes(300_000, 7);
  client.write(payload);
  await waitFor(() => client.bytesIn >= 17 + payload.length, 5000, "the binary echo");
  expect(client.received().subarray(17).equals(payload)).toBe(true);

  const stats = fwd.stats();
  expect(stats).toMatchObject({ activeSessions: 1, totalSessions: 1, bytesUp: 17 + payload.length, bytesDown: 17 + payload.length });
});

test("keeps bytes written before the upstream accepted, and delivers them first and in order", async () => {
  // The target's accept queue is full, so the forwarder's connect hangs until acceptOne() frees
  // it and the kernel retries the SYN (after about 1 s). Everything the client sends meanwhile
  // must wait in the forwarder and arrive first, in order.
  await using target = await unacceptingListener();
  await using fwd = await startForward({ to: target.address, connectTimeout: "off" });
  await using client = await dial(fwd.port);

  const early = patternBytes(200_000, 11);
  client.write(early.subarray(0, 1000));
  client.write(early.subarray(1000));
  await waitFor(() => fwd.stats().queuedBytes === early.length, 5000, "the early bytes to be queued in the forwarder");

  target.closeFd(await target.acceptOne()); // the filler
  const upstream = await target.acceptOne();
  const got = await target.receive(upstream, early.length);
  expect(got.bytes.length).toBe(early.length);
  expect(got.bytes.equals(early)).toBe(true);

  await target.send(upstream, "thanks\n");
  await waitFor(() => client.bytesIn >= 7, 5000, "the reply");
  expect(client.text()).toBe("thanks\n");
  expect(fwd.stats().queuedBytes).toBe(0);
});

test("carries 64 MiB each way at once with identical sha256", async () => {
  const size = 64 * MiB;
  // The upstream streams `size` bytes down while it hashes what comes up; the client does the same.
  await using upstream = listen(source(size));
  await using fwd = await startForward({ to: upstream.address });
  await using client = await dial(fwd.port, { keep: false });

  const sent = client.stream(size, 12345).then(() => client.shutdown());
  const server = await upstream.peer(0);
  await within(sent, 30_000, "the client's upload");
  await waitFor(() => client.ended && server.ended, 30_000, "both FINs");

  expect(server.bytesIn).toBe(size);
  expect(client.bytesIn).toBe(size);
  expect(server.hashIn.digest("hex")).toBe(client.hashOut.digest("hex"));
  expect(client.hashIn.digest("hex")).toBe(server.hashOut.digest("hex"));
  await waitFor(() => fwd.stats().activeSessions === 0, 5000, "the session to close");
  expect(fwd.stats()).toMatchObject({ bytesUp: size, bytesDown: size, droppedBytes: 0, queuedBytes: 0 });
}, 60_000);

test("carries 64 MiB to an echo and back unchanged", async () => {
  const size = 64 * MiB;
  await using upstream = listen(bulkEcho);
  await using fwd = await startForward({ to: upstream.address });
  await using client = await dial(fwd.port, { keep: false });

  await within(client.stream(size, 99), 30_000, "the upload");
  client.shutdown();
  await waitFor(() => client.ended, 30_000, "the echo's FIN");
  expect(client.bytesIn).toBe(size);
  expect(client.hashIn.digest("hex")).toBe(client.hashOut.digest("hex"));
}, 60_000);

test("delivers a one-way upload to a sink exactly", async () => {
  const size = 8 * MiB;
  await using upstream = listen(sink);
  await using fwd = await startForward({ to: upstream.address });
  await using client = await dial(fwd.port);

  await client.stream(size);
  client.shutdown();
  const server = await upstream.peer(0);
  await waitFor(() => server.ended && client.ended, 10_000, "FIN both ways");
  expect(server.bytesIn).toBe(size);
  expect(server.hashIn.digest("hex")).toBe(sha256(patternBytes(size)));
});
