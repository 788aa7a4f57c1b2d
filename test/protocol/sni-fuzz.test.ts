/**
 * Fuzzes ClientHelloReader with 100,000 random and mutated hellos (bit flips, byte
 * overwrites, truncations, corrupted length fields, inserted and deleted bytes, records
 * re-framed at random sizes or split by stray record headers, plain random bytes).
 *
 * A tenth of the cases are undamaged hellos, some re-framed into records of 6 to 405 bytes:
 * they must read as the original. Each case is read twice, whole and in random pieces (a quarter of the inputs up to 2 KiB are
 * fed 1 byte at a time), and must: not throw, return a well-formed result, return the same
 * result both ways (the split never matters), leave its input unchanged, and keep returning
 * its result once finished. The run must take less than 20 s of CPU per 100,000 cases.
 *
 * Deterministic: case i uses its own PRNG seeded from FUZZ_SEED and i. A failure names both;
 * `FUZZ_SEED=<seed> FUZZ_CASE=<i> bun test test/sni-fuzz.test.ts` runs that case alone.
 */
import { expect, test } from "bun:test";
import { ClientHelloReader, readClientHello, type ClientHelloResult } from "../../src/protocol/sni.ts";
import { buildClientHello, helloFixtures, reframe } from "../helpers/client-hello.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 20_240_501) >>> 0;
const RUNS = Number(process.env.FUZZ_RUNS ?? 100_000);
const ONLY_CASE = process.env.FUZZ_CASE === undefined ? null : Number(process.env.FUZZ_CASE);
/** Mutated inputs are cut to this size (a hello of 16 KiB in records of 100 bytes is 17 KiB). */
const MAX_INPUT = 20 * 1024;
/**
 * CPU time allowed per 100,000 cases (about 2 s here). CPU, not wall-clock time, so a busy
 * shared machine does not fail the run; the test's own timeout bounds the wall-clock time.
 */
const CPU_LIMIT_MS_PER_100K = 20_000;

type Random = () => number;

/** mulberry32: small, fast, and the same sequence everywhere. */
function prng(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const below = (random: Random, n: number) => Math.floor(random() * n);
const pick = <T>(random: Random, list: readonly T[]): T => list[below(random, list.length)]!;

const small = [
  ...helloFixtures().map((fixture) => fixture.bytes),
  buildClientHello({ serverName: "db.example.com", alpn: ["h2", "http/1.1"] }),
  buildClientHello({ serverName: null, alpn: ["h2"] }),
  buildClientHello({ serverName: "a.b", keyShare: 1216 }),
  reframe(buildClientHello({ alpn: ["acme-tls/1"] }), 100),
  reframe(buildClientHello({ serverName: "x.example.org" }), 7),
];
const large = [
  buildClientHello({ keyShare: 1216, bodyLength: 4200 }),
  reframe(buildClientHello({ alpn: ["h2"], bodyLength: 9000 }), 100),
  buildClientHello({ serverName: "big.example.com", bodyLength: 16_384 }),
];

/** Values that tend to break length checks. */
const INTERESTING_16 = [0, 1, 2, 3, 4, 5, 0x7f, 0x80, 0xff, 0x100, 0x3fff, 0x4000, 0x4001, 0x7fff, 0x8000, 0xfffe, 0xffff];

function mutate(random: Random, input: Uint8Array): Uint8Array {
  let bytes: Uint8Array = input.slice();
  const rounds = 1 + below(random, 4);
  for (let round = 0; round < rounds && bytes.length > 0; round++) {
    // Half the damage lands in the first 128 bytes, where the headers and lengths are.
    const at = random() < 0.5 ? below(random, Math.min(128, bytes.length)) : below(random, bytes.length);
    switch (below(random, 9)) {
      case 0: // bit flip
        bytes[at] = bytes[at]! ^ (1 << below(random, 8));
        break;
      case 1: // byte overwrite
        bytes[at] = pick(random, [0, 1, 0x16, 0x7f, 0x80, 0xff, below(random, 256)]);
        break;
      case 2: // truncation
        bytes = bytes.subarray(0, at);
        break;
      case 3: // a 16-bit length field, wherever one might be
      case 4: {
        const value = random() < 0.7 ? pick(random, INTERESTING_16) : (((bytes[at]! << 8) | (bytes[at + 1] ?? 0)) + pick(random, [-2, -1, 1, 2])) & 0xffff;
        bytes[at] = value >> 8;
        if (at + 1 < bytes.length) bytes[at + 1] = value & 0xff;
        break;
      }
      case 5: // the record or handshake length fields themselves
        bytes[pick(random, [3, 4, 6, 7, 8])] = below(random, 256);
        break;
      case 6: // a stray record header splitting a record in the wrong place
        bytes = splice(bytes, at, 0, Uint8Array.of(22, 3, pick(random, [0, 1, 3, 4]), below(random, 2), below(random, 256)));
        break;
      case 7: // inserted or deleted bytes
        if (random() < 0.5) bytes = splice(bytes, at, 1 + below(random, 16), new Uint8Array(0));
        else
          bytes = splice(
            bytes,
            at,
            0,
            Uint8Array.from({ length: 1 + below(random, 16) }, () => below(random, 256)),
          );
        break;
      default: // re-framed at a random record size (keeps the hello, changes the records)
        bytes = reframe(bytes, 1 + below(random, 300));
    }
  }
  return bytes.subarray(0, MAX_INPUT);
}

/** `bytes` with `remove` bytes at `at` replaced by `insert`, as a new array. */
function splice(bytes: Uint8Array, at: number, remove: number, insert: Uint8Array): Uint8Array {
  const tail = bytes.subarray(Math.min(bytes.length, at + remove));
  const out = new Uint8Array(at + insert.length + tail.length);
  out.set(bytes.subarray(0, at));
  out.set(insert, at);
  out.set(tail, at + insert.length);
  return out;
}

interface Case {
  bytes: Uint8Array;
  /** For an undamaged hello (re-framed at most): what it must read as. */
  expected: ClientHelloResult | null;
}

const expectedOf = new Map([...small, ...large].map((hello) => [hello, readClientHello(hello)]));

function makeCase(random: Random): Case {
  const kind = random();
  if (kind < 0.1) {
    // random bytes, a third of them starting like a handshake record
    const bytes = Array.from({ length: below(random, 600) }, () => below(random, 256));
    if (random() < 0.33) bytes.unshift(22, 3, below(random, 5));
    return { bytes: Uint8Array.from(bytes), expected: null };
  }
  const base = random() < 0.03 ? pick(random, large) : pick(random, small);
  if (kind < 0.2) {
    // the same hello in records of a random size (down to 6 bytes, the least for the largest)
    const bytes = random() < 0.2 ? base : reframe(base, 6 + below(random, 400));
    return { bytes, expected: expectedOf.get(base)! };
  }
  return { bytes: mutate(random, base), expected: null };
}

/** Feeds `bytes` in random pieces; checks every call returns a result and finished ones stick. */
function feedInPieces(random: Random, bytes: Uint8Array): ClientHelloResult {
  const reader = new ClientHelloReader();
  const oneByOne = bytes.length <= 2048 && random() < 0.25;
  let result: ClientHelloResult = reader.result;
  for (let at = 0; at < bytes.length; ) {
    const size = oneByOne ? 1 : 1 + below(random, random() < 0.5 ? 16 : 2000);
    const next = reader.push(bytes.subarray(at, at + size));
    if (result.state !== "need-more" && next !== result) throw new Error("a finished reader changed its result");
    result = next;
    at += size;
  }
  return result;
}

const HOST_NAME = /^[A-Za-z0-9._-]{1,255}$/;

function checkShape(result: ClientHelloResult): void {
  if (result.state === "need-more") return;
  if (result.state === "error") {
    if (typeof result.reason !== "string" || result.reason === "") throw new Error("an error without a reason");
    return;
  }
  if (result.state !== "done") throw new Error(`unknown state ${JSON.stringify(result)}`);
  if (result.serverName !== null && !HOST_NAME.test(result.serverName)) throw new Error(`bad server name ${JSON.stringify(result.serverName)}`);
  if (!Array.isArray(result.alpn) || result.alpn.some((protocol) => typeof protocol !== "string" || protocol.length === 0 || protocol.length > 255)) {
    throw new Error(`bad ALPN list ${JSON.stringify(result.alpn)}`);
  }
}

test(
  `survives ${RUNS.toLocaleString("en")} random and mutated ClientHellos (seed ${SEED})`,
  () => {
    const counts = { done: 0, "need-more": 0, error: 0 };
    const reasons = new Map<string, number>();
    let bytesFed = 0;
    let largestInput = 0;
    const started = performance.now();
    const cpuBefore = process.cpuUsage();
    for (let index = ONLY_CASE ?? 0; index < (ONLY_CASE === null ? RUNS : ONLY_CASE + 1); index++) {
      const random = prng((SEED ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0);
      const { bytes, expected } = makeCase(random);
      const copy = Buffer.from(bytes);
      try {
        const whole = readClientHello(bytes);
        const pieces = feedInPieces(random, bytes);
        checkShape(whole);
        if (expected !== null && JSON.stringify(whole) !== JSON.stringify(expected)) {
          throw new Error(`an undamaged hello read as ${JSON.stringify(whole)}, not ${JSON.stringify(expected)}`);
        }
        if (JSON.stringify(whole) !== JSON.stringify(pieces)) {
          throw new Error(`whole and split differ: ${JSON.stringify(whole)} vs ${JSON.stringify(pieces)}`);
        }
        if (!Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).equals(copy)) throw new Error("the input was changed");
        counts[whole.state]++;
        const reason = whole.state === "error" ? whole.reason.replace(/\d+/g, "N") : whole.state;
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      } catch (error) {
        const hex = Buffer.from(bytes.subarray(0, 64)).toString("hex");
        throw new Error(
          `case ${index} (FUZZ_SEED=${SEED} FUZZ_CASE=${index}), ${bytes.length} bytes starting ${hex}: ${(error as Error).stack ?? String(error)}`,
        );
      }
      bytesFed += bytes.length * 2;
      largestInput = Math.max(largestInput, bytes.length);
    }
    const elapsed = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);
    const cpuMs = (cpu.user + cpu.system) / 1000;
    const top = [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 12);
    console.log(
      `sni fuzz: seed ${SEED}, ${ONLY_CASE === null ? `${RUNS} cases` : `case ${ONLY_CASE}`} in ${Math.round(elapsed)} ms (${Math.round(cpuMs)} ms CPU), ${(bytesFed / 1e6).toFixed(1)} MB fed, largest ${largestInput} bytes; ` +
        `done ${counts.done}, need-more ${counts["need-more"]}, error ${counts.error}\n` +
        top.map(([reason, count]) => `  ${String(count).padStart(6)}  ${reason}`).join("\n"),
    );
    expect([...expectedOf.values()].every((result) => result.state === "done")).toBe(true);
    if (ONLY_CASE === null) {
      // Every outcome is exercised, not just the first check the parser makes.
      expect(counts.done).toBeGreaterThan(RUNS / 20);
      expect(counts["need-more"]).toBeGreaterThan(RUNS / 100);
      expect(reasons.size).toBeGreaterThan(15);
    }
    expect(cpuMs).toBeLessThan((CPU_LIMIT_MS_PER_100K * Math.max(RUNS, 100_000)) / 100_000);
  },
  120_000 * Math.max(1, RUNS / 100_000),
);
