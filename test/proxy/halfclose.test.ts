/** A FIN ends one direction only: the other keeps flowing until its own FIN. */
import { expect, test } from "bun:test";
import { dial, halfCloser, listen, MiB, patternBytes, sha256, waitFor } from "../helpers/net.ts";
import { startForward } from "../helpers/router.ts";

test("keeps the upstream open after the client half-closes, and delivers its answer", async () => {
  await using upstream = listen(halfCloser((question) => `answer to ${question.toString()}`));
  await using fwd = await startForward({ to: upstream.address });
  await using client = await dial(fwd.port);

  client.write("question 1");
  client.shutdown();
  const server = await upstream.peer(0);
  await waitFor(() => server.ended, 5000, "the client's FIN at the upstream");
  expect(server.text()).toBe("question 1");

  await waitFor(() => client.ended, 5000, "the answer and the upstream's FIN");
  expect(client.text()).toBe("answer to question 1");
  expect(client.closeError).toBeUndefined();
  await waitFor(() => fwd.stats().activeSessions === 0, 5000, "the session to close");
  expect(fwd.matching("client_fin")).toHaveLength(1);
}, 15_000);

test("keeps the client open after the upstream half-closes, and delivers what it sends next", async () => {
  await using upstream = listen({
    open: (peer) => {
      peer.write("greeting, and that is all from me\n");
      peer.shutdown();
    },
  });
  await using fwd = await startForward({ to: upstream.address });
  await using client = await dial(fwd.port);

  await waitFor(() => client.ended, 5000, "the greeting and the upstream's FIN");
  expect(client.text()).toBe("greeting, and that is all from me\n");
  expect(client.closed).toBe(false);
  expect(fwd.stats().activeSessions).toBe(1);

  client.write("still talking after your FIN");
  const server = await upstream.peer(0);
  await waitFor(() => server.bytesIn >= 28, 5000, "the client's late bytes at the upstream");
  expect(server.text()).toBe("still talking after your FIN");

  client.shutdown();
  await waitFor(() => server.ended, 5000, "the client's FIN at the upstream");
  await waitFor(() => fwd.stats().activeSessions === 0, 5000, "the session to close");
  expect(fwd.matching("upstream_fin")).toHaveLength(1);
  expect(fwd.stats().droppedBytes).toBe(0);
}, 15_000);

// The session's last pipe leaves its FIN to close(2) (no shutdown first) when the socket it
// writes has sent FIN already. close(2) must still deliver every byte the kernel holds, then
// FIN (not RST): a 16 MiB answer to a client that half-closed and reads only later.
test("delivers a large answer in full, then FIN, to a client that half-closed and reads late", async () => {
  const size = 16 * MiB;
  await using upstream = listen({ keep: false, end: (peer) => void peer.stream(size).then(() => peer.shutdown()) });
  await using fwd = await startForward({ to: upstream.address });
  await using client = await dial(fwd.port, { keep: false });

  client.pause();
  client.write("send it all");
  client.shutdown();
  const server = await upstream.peer(0);
  await waitFor(() => server.ended, 5000, "the client's FIN at the upstream");
  await Bun.sleep(200);
  client.resume();

  await waitFor(() => client.ended, 10_000, "the whole answer and the FIN");
  expect(client.bytesIn).toBe(size);
  expect(client.hashIn.digest("hex")).toBe(sha256(patternBytes(size)));
  expect(client.closeError).toBeUndefined();
  await waitFor(() => fwd.stats().activeSessions === 0, 5000, "the session to close");
  expect(fwd.stats().droppedBytes).toBe(0);
}, 20_000);
