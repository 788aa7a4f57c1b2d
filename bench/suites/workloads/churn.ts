/**
 * The upgrade suite's load, run by the bench process itself so every failure is seen and named:
 *
 * - connect loops: connect → PING → PONG → close, again at once, each attempt counted as ok,
 *   refused (ECONNREFUSED at connect), reset (ECONNRESET/EPIPE, or closed before the PONG) or
 *   timeout (no PONG within the deadline);
 * - kept sessions: connections opened once, each sending a PING every `everyMs` and checking
 *   the PONG; a session that is closed, reset or left without an answer is cut (and stays cut:
 *   it is not reopened), with the time and the reason.
 */
import { createConnection, type Socket } from "node:net";
import { HOST } from "../../runner/net.ts";

const PING = Buffer.from("*1\r\n$4\r\nPING\r\n");
const PONG = "+PONG\r\n";

export type Outcome = "ok" | "refused" | "reset" | "timeout";

/** One connect → PING → PONG → close against 127.0.0.1:port. `detail` is the errno or what happened. */
export function pingOnce(port: number, timeoutMs: number): Promise<{ outcome: Outcome; detail: string }> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: HOST, port });
    let got = "";
    let connected = false;
    let done = false;
    const finish = (outcome: Outcome, detail: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ outcome, detail });
    };
    const timer = setTimeout(() => finish("timeout", connected ? "no PONG" : "no connect"), timeoutMs);
    sock.setNoDelay(true);
    sock.once("connect", () => {
      connected = true;
      sock.write(PING);
    });
    sock.on("data", (chunk: Buffer) => {
      got += chunk.toString("latin1");
      if (got.startsWith(PONG)) finish("ok", "PONG");
      else if (got.length >= PONG.length) finish("reset", `unexpected reply ${JSON.stringify(got.slice(0, 40))}`);
    });
    sock.on("error", (error: NodeJS.ErrnoException) => {
      const code = error.code ?? "error";
      finish(code === "ECONNREFUSED" ? "refused" : "reset", code);
    });
    sock.on("close", () => finish("reset", connected ? "closed before PONG" : "closed before connect"));
  });
}

export interface ConnectCounts {
  ok: number;
  refused: number;
  reset: number;
  timeout: number;
  /** How long the loops ran (ms). */
  elapsedMs: number;
  /** Each errno or reason seen, counted (ECONNREFUSED, ECONNRESET, closed before PONG, …). */
  details: Record<string, number>;
  /** Failed attempts with their time (ms since the loops started), the first 50. */
  failures: { atMs: number; outcome: Outcome; detail: string }[];
}

/** `loops` concurrent connect loops until `stop()`, which resolves with the counts. */
export function connectLoops(port: number, loops: number, timeoutMs = 5000): { stop(): Promise<ConnectCounts>; counts: ConnectCounts } {
  const counts: ConnectCounts = { ok: 0, refused: 0, reset: 0, timeout: 0, elapsedMs: 0, details: {}, failures: [] };
  const start = performance.now();
  let running = true;
  const one = async () => {
    while (running) {
      const { outcome, detail } = await pingOnce(port, timeoutMs);
      counts[outcome]++;
      if (outcome !== "ok") {
        counts.details[detail] = (counts.details[detail] ?? 0) + 1;
        if (counts.failures.length < 50) counts.failures.push({ atMs: Math.round(performance.now() - start), outcome, detail });
        // a refused connect returns at once: do not spin on a closed port
        await Bun.sleep(1);
      }
    }
  };
  const all = Array.from({ length: loops }, one);
  return {
    counts,
    async stop() {
      running = false;
      await Promise.all(all);
      counts.elapsedMs = Math.round(performance.now() - start);
      return counts;
    },
  };
}

export interface KeptResult {
  sessions: number;
  cut: number;
  /** PINGs answered, over all sessions. */
  pongs: number;
  /** The longest wait for one PONG (ms), over all sessions: how long a handover stalled a session. */
  maxWaitMs: number;
  /** Each cut session: when (ms since the sessions opened) and why. */
  cuts: { atMs: number; reason: string }[];
}

interface Kept {
  sock: Socket;
  cut: string | null;
  cutAt: number;
  sentAt: number | null;
  buf: string;
}

/**
 * Opens `count` sessions to 127.0.0.1:port, waits for each one's first PONG (throws when one
 * does not answer), then PINGs on each every `everyMs` until `stop()`.
 */
export async function keptSessions(port: number, count: number, everyMs = 100, timeoutMs = 5000): Promise<{ stop(): Promise<KeptResult>; alive(): number }> {
  const start = performance.now();
  const sessions: Kept[] = [];
  let pongs = 0;
  let maxWaitMs = 0;
  const cut = (s: Kept, reason: string) => {
    if (s.cut !== null) return;
    s.cut = reason;
    s.cutAt = performance.now() - start;
    s.sock.destroy();
  };
  const ping = (s: Kept) => {
    if (s.cut !== null || s.sentAt !== null) return;
    s.sentAt = performance.now();
    s.sock.write(PING);
  };
  const opened = Array.from(
    { length: count },
    () =>
      new Promise<void>((resolve, reject) => {
        const s: Kept = { sock: createConnection({ host: HOST, port }), cut: null, cutAt: 0, sentAt: null, buf: "" };
        sessions.push(s);
        let first = true;
        s.sock.setNoDelay(true);
        s.sock.once("connect", () => ping(s));
        s.sock.on("data", (chunk: Buffer) => {
          s.buf += chunk.toString("latin1");
          while (s.buf.startsWith(PONG)) {
            s.buf = s.buf.slice(PONG.length);
            if (s.sentAt === null) return cut(s, "a PONG nobody asked for");
            const waited = performance.now() - s.sentAt;
            s.sentAt = null;
            if (first) {
              first = false;
              resolve();
            } else {
              pongs++;
              maxWaitMs = Math.max(maxWaitMs, waited);
            }
          }
          if (s.buf.length >= PONG.length) cut(s, `unexpected reply ${JSON.stringify(s.buf.slice(0, 40))}`);
        });
        s.sock.on("error", (error: NodeJS.ErrnoException) => {
          cut(s, error.code ?? "error");
          if (first) reject(new Error(`kept session: ${error.code ?? error.message} before its first PONG`));
        });
        s.sock.on("close", () => {
          cut(s, s.sentAt !== null ? "closed before PONG" : "closed");
          if (first) reject(new Error("kept session: closed before its first PONG"));
        });
      }),
  );
  const deadline = Bun.sleep(timeoutMs).then(() => {
    throw new Error(`kept sessions: not all ${count} answered their first PONG within ${timeoutMs} ms`);
  });
  try {
    await Promise.race([Promise.all(opened), deadline]);
  } catch (error) {
    for (const s of sessions) s.sock.destroy();
    throw error;
  }
  const tick = setInterval(() => {
    const now = performance.now();
    for (const s of sessions) {
      if (s.cut !== null) continue;
      if (s.sentAt !== null && now - s.sentAt > timeoutMs) cut(s, `no PONG within ${timeoutMs} ms`);
      else ping(s);
    }
  }, everyMs);
  return {
    alive: () => sessions.filter((s) => s.cut === null).length,
    async stop() {
      clearInterval(tick);
      // the last PINGs get their answers (or their deadline) before the sessions close
      const until = performance.now() + timeoutMs;
      while (sessions.some((s) => s.cut === null && s.sentAt !== null) && performance.now() < until) await Bun.sleep(10);
      for (const s of sessions) if (s.cut === null && s.sentAt !== null) cut(s, `no PONG within ${timeoutMs} ms`);
      const cuts = sessions.filter((s) => s.cut !== null).map((s) => ({ atMs: Math.round(s.cutAt), reason: s.cut! }));
      for (const s of sessions) {
        s.sock.removeAllListeners("close");
        s.sock.destroy();
      }
      return { sessions: count, cut: cuts.length, pongs, maxWaitMs: Math.round(maxWaitMs), cuts };
    },
  };
}
