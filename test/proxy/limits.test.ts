/** Many sessions at once: a connection limit, exact bytes for each, and nothing left open after. */
import { expect, test } from "bun:test";
import { dial, echo, fdCount, listen, patternBytes, type Peer, waitFor } from "../helpers/net.ts";
import { startForward } from "../helpers/router.ts";

test("closes the connection over max-connections at once, counts it, and accepts again below the limit", async () => {
  await using upstream = listen(echo);
  await using fwd = await startForward({ to: upstream.address, maxConnections: 2 });
  await using first = await dial(fwd.port);
  await using second = await dial(fwd.port);
  for (const client of [first, second]) client.write("in");
  await waitFor(() => first.bytesIn === 2 && second.bytesIn === 2, 5000, "both sessions to echo");

  await using third = await dial(fwd.port);
  third.write("let me in");
  await waitFor(() => third.hungUp, 5000, "the third connection to be closed");
  expect(third.bytesIn).toBe(0);
  expect(fwd.stats()).toMatchObject({ refused: 1, activeSessions: 2, totalSessions: 2 });
  expect(upstream.peers).toHaveLength(2); // no upstream was dialled for it
  expect(fwd.matching("max_connections 2 reached")).toHaveLength(1);

  first.shutdown();
  await waitFor(() => fwd.stats().activeSessions === 1, 5000, "the first session to close");
  await using fourth = await dial(fwd.port);
  fourth.write("my turn");
  await waitFor(() => fourth.bytesIn === 7, 5000, "the fourth session to echo");
  expect(fourth.text()).toBe("my turn");
  expect(fwd.stats().refused).toBe(1);
}, 15_000);

test("carries exact bytes on 1,000 concurrent sessions and leaks no file descriptor", async () => {
  const sessions = 1000;
  const size = 4096;
  await using upstream = listen(echo);
  await using fwd = await startForward({ to: upstream.address });
  {
    // Warm up, so that descriptors Bun opens once (epoll, timers) are in the baseline.
    await using warm = await dial(fwd.port);
    warm.write("warm");
    await waitFor(() => warm.bytesIn === 4, 5000, "the warm-up echo");
    warm.shutdown();
    await waitFor(() => warm.closed && fwd.stats().activeSessions === 0, 5000, "the warm-up session to close");
  }
  const baseline = fdCount();

  const clients: Peer[] = [];
  try {
    for (let batch = 0; batch < sessions / 100; batch++) {
      clients.push(...(await Promise.all(Array.from({ length: 100 }, () => dial(fwd.port)))));
    }
    await waitFor(() => fwd.stats().activeSessions === sessions && upstream.peers.length === sessions + 1, 20_000, "every session to be open");

    const payloads = clients.map((_, i) => Buffer.concat([Buffer.from(`session ${String(i).padStart(4, "0")}:`), patternBytes(size, i * 7919)]));
    for (const [i, client] of clients.entries()) client.write(payloads[i]!);
    await waitFor(() => clients.every((client, i) => client.bytesIn >= payloads[i]!.length), 20_000, "every echo");
    const wrong = clients.filter((client, i) => !client.received().equals(payloads[i]!)).length;
    expect(wrong).toBe(0);
    expect(fwd.stats().activeSessions).toBe(sessions);

    for (const client of clients) client.shutdown();
    await waitFor(() => clients.every((client) => client.closed), 20_000, "every client to be closed");
    await waitFor(() => fwd.stats().activeSessions === 0, 10_000, "every session to close");
    await waitFor(() => fdCount() <= baseline, 10_000, `the fd count to return to ${baseline}`);
    expect(fwd.stats()).toMatchObject({ totalSessions: sessions + 1, droppedBytes: 0, queuedBytes: 0 });
  } finally {
    await Promise.all(clients.map((client) => client[Symbol.asyncDispose]()));
  }
}, 60_000);
