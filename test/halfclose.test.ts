/** A FIN ends one direction only: the other keeps flowing until its own FIN. */
import { expect, test } from "bun:test";
import { dial, halfCloser, listen, startForward, waitFor } from "./_helpers.ts";

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
