/**
 * Fuzzes QuicInitialReader with 100,000 cases, each with at least one damaged datagram:
 *
 * - wire damage (half): a clean hello's datagrams (RFC samples, one to three Initials, coalesced
 *   or not, v1 and v2) with bit flips, byte overwrites, truncations, header length fields
 *   (connection IDs, token, Length) and versions changed, bytes inserted or deleted;
 * - sealed damage (a third): the frames are damaged before encryption (frame types, varints,
 *   CRYPTO offsets and lengths, the hello itself, packet number sizes, reserved bits), so the
 *   packets decrypt and the frame parser and ClientHelloReader see the damage;
 * - random datagrams, a third of them starting like an Initial; and a few clean hellos.
 *
 * Each push must return a well-formed result within `MAX_PUSH_MS` and leave its datagram
 * unchanged; a finished reader keeps its result; no reason may be "internal error" (the reader's
 * safety net for a throw). Wire damage can never change the answer: AEAD covers every byte that
 * matters, so a "done" result must be the clean hello's. The run must take less than 20 s of CPU.
 *
 * Deterministic: case i uses its own PRNG seeded from FUZZ_SEED and i. A failure names both;
 * `FUZZ_SEED=<seed> FUZZ_CASE=<i> bun test test/protocol/quic-fuzz.test.ts` runs that case alone.
 */
import { expect, test } from "bun:test";
import { QuicInitialReader, type QuicInitialResult } from "../../src/protocol/quic.ts";
import { ackFrame, concat, cryptoFrames, hex, type InitialOptions, PING, sealDatagram, V1, V2, helloHandshake } from "../helpers/quic.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 20_250_611) >>> 0;
const RUNS = Number(process.env.FUZZ_RUNS ?? 100_000);
const ONLY_CASE = process.env.FUZZ_CASE === undefined ? null : Number(process.env.FUZZ_CASE);
/** CPU time allowed per 100,000 cases (a few seconds here). */
const CPU_LIMIT_MS_PER_100K = 20_000;
/**
 * The slowest a push may be (they take well under 1 ms). A push over it is timed again twice
 * on a fresh reader, and fails the run only if it stays slow: a busy shared machine or a GC
 * pause stalls one push now and then, a loop that does not end stalls it every time.
 */
const MAX_PUSH_MS = 50;

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

const DCIDS = [hex("8394c8f03e515708"), hex("0001020304050607"), hex("c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"), hex("5a5a5a5a5a5a5a5a5a5a5a5a")];
const HELLOS = [
  helloHandshake({ serverName: "app.example", alpn: ["h3"] }),
  helloHandshake({ serverName: "pq.example.com", alpn: ["h3", "h3-29"], keyShare: 1216 }),
  helloHandshake({ serverName: null, alpn: [] }),
];

/** A datagram plan: per datagram, its packets (frames only: version and DCID come with the case). */
type Plan = Omit<InitialOptions, "version" | "dcid">[][];

function plans(hello: Uint8Array): Plan[] {
  const [a, b] = cryptoFrames(hello, 2);
  const [c, d, e] = cryptoFrames(hello, 3);
  return [
    [[{ payload: concat(...cryptoFrames(hello, 1)) }]],
    [[{ payload: a!, packetNumber: 0 }], [{ payload: b!, packetNumber: 1, pnLength: 1 }]],
    [
      [
        { payload: concat(e!, PING), packetNumber: 0, pnLength: 2 },
        { payload: concat(ackFrame(0), c!), packetNumber: 1 },
      ],
      [{ payload: d!, packetNumber: 2 }],
    ],
  ];
}

interface Base {
  version: number;
  dcid: Uint8Array;
  plan: Plan;
  datagrams: Uint8Array[];
  expected: QuicInitialResult;
}

function seal(version: number, dcid: Uint8Array, plan: Plan): Uint8Array[] {
  return plan.map((packets) => sealDatagram(packets.map((packet) => ({ ...packet, version, dcid }))));
}

function readAll(datagrams: Uint8Array[]): QuicInitialResult {
  const reader = new QuicInitialReader();
  for (const datagram of datagrams) reader.push(datagram);
  return reader.result;
}

const BASES: Base[] = [];
for (const version of [V1, V2]) {
  for (const dcid of DCIDS) {
    for (const hello of HELLOS) {
      for (const plan of plans(hello)) {
        const datagrams = seal(version, dcid, plan);
        BASES.push({ version, dcid, plan, datagrams, expected: readAll(datagrams) });
      }
    }
  }
}

/** Values that tend to break length checks (1-byte fields and 2-byte varints). */
const INTERESTING_8 = [0, 1, 7, 8, 19, 20, 21, 0x3f, 0x40, 0x7f, 0x80, 0xbf, 0xc0, 0xff];
const INTERESTING_16 = [0x4000, 0x4001, 0x4013, 0x4014, 0x44a0, 0x44c0, 0x7fff, 0x8000, 0xffff, 0x0000, 0x3f00];
const VERSIONS = [V1, V2, 0, 0xff00001d, 0x709a50c4, 0x1a2a3a4a];

/** Wire damage. Offsets: first byte 0, version 1-4, DCID length 5; after the DCID, SCID length, token length, Length. */
function damageWire(random: Random, input: Uint8Array): Uint8Array {
  let bytes: Uint8Array = input.slice();
  const rounds = 1 + below(random, 3);
  for (let round = 0; round < rounds && bytes.length > 0; round++) {
    const at = random() < 0.6 ? below(random, Math.min(64, bytes.length)) : below(random, bytes.length);
    const afterDcid = 6 + (bytes[5] ?? 0);
    switch (below(random, 9)) {
      case 0:
        bytes[at] = bytes[at]! ^ (1 << below(random, 8));
        break;
      case 1:
        bytes[at] = pick(random, [...INTERESTING_8, below(random, 256)]);
        break;
      case 2:
        bytes = bytes.subarray(0, at);
        break;
      case 3: {
        // a header length field: DCID, SCID, token length or the 2-byte Length
        const field = pick(random, [5, afterDcid, afterDcid + 1, afterDcid + 2]);
        if (field === afterDcid + 2 && field + 1 < bytes.length) {
          const value = pick(random, [...INTERESTING_16, (((bytes[field]! << 8) | bytes[field + 1]!) + pick(random, [-17, -1, 1, 16])) & 0xffff]);
          bytes[field] = value >> 8;
          bytes[field + 1] = value & 0xff;
        } else if (field < bytes.length) {
          bytes[field] = pick(random, INTERESTING_8);
        }
        break;
      }
      case 4:
        bytes[0] = random() < 0.5 ? bytes[0]! ^ (1 << below(random, 8)) : below(random, 256);
        break;
      case 5: {
        const version = pick(random, VERSIONS);
        bytes.set([version >>> 24, (version >> 16) & 0xff, (version >> 8) & 0xff, version & 0xff].slice(0, Math.max(0, bytes.length - 1)), 1);
        break;
      }
      case 6:
        bytes = splice(bytes, at, 1 + below(random, 16), new Uint8Array(0));
        break;
      case 7:
        bytes = splice(
          bytes,
          at,
          0,
          Uint8Array.from({ length: 1 + below(random, 16) }, () => below(random, 256)),
        );
        break;
      default: // trailing garbage after the packets
        bytes = concat(
          bytes,
          Uint8Array.from({ length: 1 + below(random, 64) }, () => below(random, 256)),
        );
    }
  }
  return bytes;
}

/** Damage to the frames, before they are sealed. */
function damageFrames(random: Random, input: Uint8Array): Uint8Array {
  let bytes: Uint8Array = input.slice();
  const rounds = 1 + below(random, 3);
  for (let round = 0; round < rounds && bytes.length > 0; round++) {
    const at = random() < 0.5 ? below(random, Math.min(16, bytes.length)) : below(random, bytes.length);
    switch (below(random, 7)) {
      case 0:
        bytes[at] = bytes[at]! ^ (1 << below(random, 8));
        break;
      case 1: // a frame type, allowed in an Initial or not
        bytes[at] = pick(random, [0x00, 0x01, 0x02, 0x03, 0x06, 0x08, 0x0f, 0x18, 0x1c, 0x1d, 0x1e, 0x30, 0x40, 0xc0, below(random, 256)]);
        break;
      case 2: // a varint of another size or value
        bytes = splice(
          bytes,
          at,
          below(random, 3),
          pick(random, [
            Uint8Array.of(0x40, 0x00),
            Uint8Array.of(0x7f, 0xff),
            Uint8Array.of(0xbf, 0xff, 0xff, 0xff),
            Uint8Array.of(0xc0, 0, 0, 0, 0, 0, 0x40, 0x05),
            Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
            Uint8Array.of(0x3f),
          ]),
        );
        break;
      case 3: // CRYPTO offset or length (bytes 1-4 of a CRYPTO frame at the start)
        bytes[1 + below(random, 4)] = pick(random, INTERESTING_8);
        break;
      case 4:
        bytes = bytes.subarray(0, at);
        break;
      case 5: // a frame inserted
        bytes = splice(
          bytes,
          at,
          0,
          pick(random, [
            PING,
            ackFrame(below(random, 100)),
            Uint8Array.of(0x1c, 0, 0, 0),
            Uint8Array.of(0x06, 0x40, 0x10, 0x03, 1, 2, 3),
            Uint8Array.of(0x03, 1, 0, 0xff, 0, 0),
          ]),
        );
        break;
      default: // the hello's bytes
        bytes[below(random, bytes.length)] = below(random, 256);
    }
  }
  return bytes;
}

function splice(bytes: Uint8Array, at: number, remove: number, insert: Uint8Array): Uint8Array {
  return concat(bytes.subarray(0, at), insert, bytes.subarray(Math.min(bytes.length, at + remove)));
}

interface Case {
  datagrams: Uint8Array[];
  /** Half the cases read datagrams of any size, so that damage reaches past the size check. */
  minDatagramSize: number | undefined;
  /** For wire damage and clean hellos: a "done" result must be this. */
  expected: QuicInitialResult | null;
  kind: string;
}

function makeCase(random: Random): Case {
  const minDatagramSize = random() < 0.5 ? 0 : undefined;
  return { minDatagramSize, ...makeDatagrams(random) };
}

function makeDatagrams(random: Random): Omit<Case, "minDatagramSize"> {
  const base = pick(random, BASES);
  const kind = random();
  if (kind < 0.5) {
    const datagrams = base.datagrams.slice();
    const target = random() < 0.6 ? 0 : below(random, datagrams.length);
    datagrams[target] = damageWire(random, datagrams[target]!);
    if (random() < 0.2) datagrams.reverse();
    return { datagrams, expected: base.expected.state === "done" ? base.expected : null, kind: "wire" };
  }
  if (kind < 0.85) {
    const plan = base.plan.map((packets) => packets.map((packet) => ({ ...packet })));
    const datagram = below(random, plan.length);
    const packet = plan[datagram]![below(random, plan[datagram]!.length)]!;
    packet.payload = damageFrames(random, packet.payload);
    if (random() < 0.2) packet.pnLength = 1 + below(random, 4);
    if (random() < 0.2) packet.packetNumber = pick(random, [0, 1, 255, 256, 65_535, 2 ** 24, 2 ** 30 + 7]);
    if (random() < 0.05) packet.reserved = 1 + below(random, 3);
    return { datagrams: seal(base.version, base.dcid, plan), expected: null, kind: "sealed" };
  }
  if (kind < 0.97) {
    const bytes = Uint8Array.from({ length: pick(random, [0, 1, 7, 30, 1199, 1200, 1350]) }, () => below(random, 256));
    if (random() < 0.33 && bytes.length >= 14) bytes.set([0xc0 | (below(random, 4) << 4), 0, 0, 0, 1, 8], 0);
    return { datagrams: [bytes], expected: null, kind: "random" };
  }
  return { datagrams: base.datagrams, expected: base.expected, kind: "clean" };
}

/** The slowest push when the case's datagrams are pushed to a fresh reader. */
function slowestPush(datagrams: Uint8Array[], minDatagramSize: number | undefined): number {
  const reader = new QuicInitialReader({ minDatagramSize });
  let slowest = 0;
  for (const datagram of datagrams) {
    const before = performance.now();
    reader.push(datagram);
    slowest = Math.max(slowest, performance.now() - before);
  }
  return slowest;
}

const HOST_NAME = /^[A-Za-z0-9._-]{1,255}$/;

function checkShape(result: QuicInitialResult): void {
  if (result.state === "need-more") return;
  if (result.state === "error") {
    if (typeof result.reason !== "string" || result.reason === "" || result.reason.includes("\n")) throw new Error("an error without a one-line reason");
    if (result.reason.startsWith("internal error")) throw new Error(`the reader threw: ${result.reason}`);
    return;
  }
  if (result.state !== "done") throw new Error(`unknown state ${JSON.stringify(result)}`);
  if (result.serverName !== null && !HOST_NAME.test(result.serverName)) throw new Error(`bad server name ${JSON.stringify(result.serverName)}`);
  if (result.version !== V1 && result.version !== V2) throw new Error(`bad version ${result.version}`);
  if (!Array.isArray(result.alpn) || result.alpn.some((protocol) => typeof protocol !== "string" || protocol.length === 0))
    throw new Error(`bad ALPN ${JSON.stringify(result.alpn)}`);
}

test(
  `survives ${RUNS.toLocaleString("en")} cases of damaged QUIC Initials (seed ${SEED})`,
  () => {
    expect(BASES.every((base) => base.expected.state === "done")).toBe(true);
    const counts = { done: 0, "need-more": 0, error: 0 };
    const kinds = new Map<string, number>();
    const reasons = new Map<string, number>();
    let pushes = 0;
    let slowest = 0;
    let retimed = 0;
    const started = performance.now();
    const cpuBefore = process.cpuUsage();
    for (let index = ONLY_CASE ?? 0; index < (ONLY_CASE === null ? RUNS : ONLY_CASE + 1); index++) {
      const random = prng((SEED ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0);
      const { datagrams, expected, kind, minDatagramSize } = makeCase(random);
      const copies = datagrams.map((datagram) => Buffer.from(datagram));
      try {
        const reader = new QuicInitialReader({ minDatagramSize });
        let result: QuicInitialResult = reader.result;
        for (const datagram of datagrams) {
          const before = performance.now();
          const next = reader.push(datagram);
          let took = performance.now() - before;
          if (took > MAX_PUSH_MS) {
            took = Math.min(took, slowestPush(datagrams, minDatagramSize), slowestPush(datagrams, minDatagramSize));
            if (took > MAX_PUSH_MS) throw new Error(`a push took ${took.toFixed(1)} ms, three times`);
            retimed++;
          }
          slowest = Math.max(slowest, took);
          if (result.state !== "need-more" && next !== result) throw new Error("a finished reader changed its result");
          checkShape(next);
          result = next;
          pushes++;
        }
        if (expected !== null && result.state === "done" && JSON.stringify(result) !== JSON.stringify(expected)) {
          throw new Error(`damage changed the answer: ${JSON.stringify(result)}, not ${JSON.stringify(expected)}`);
        }
        if (kind === "clean" && JSON.stringify(result) !== JSON.stringify(expected)) throw new Error(`a clean hello read as ${JSON.stringify(result)}`);
        if (datagrams.some((datagram, i) => !copies[i]!.equals(datagram))) throw new Error("a datagram was changed");
        counts[result.state]++;
        kinds.set(`${kind} ${result.state}`, (kinds.get(`${kind} ${result.state}`) ?? 0) + 1);
        const reason = result.state === "error" ? result.reason.replace(/0x[0-9a-f]+|\d+/g, "N") : result.state;
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      } catch (error) {
        const hexStart = Buffer.from(datagrams[0]?.subarray(0, 48) ?? []).toString("hex");
        throw new Error(
          `case ${index} (FUZZ_SEED=${SEED} FUZZ_CASE=${index}), ${kind}, first datagram starts ${hexStart}: ${(error as Error).stack ?? String(error)}`,
        );
      }
    }
    const elapsed = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);
    const cpuMs = (cpu.user + cpu.system) / 1000;
    const top = [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 25);
    console.log(
      `quic fuzz: seed ${SEED}, ${ONLY_CASE === null ? `${RUNS} cases` : `case ${ONLY_CASE}`}, ${pushes} datagrams in ${Math.round(elapsed)} ms (${Math.round(cpuMs)} ms CPU), slowest push ${slowest.toFixed(2)} ms (${retimed} timed again); ` +
        `done ${counts.done}, need-more ${counts["need-more"]}, error ${counts.error}\n` +
        [...kinds]
          .sort()
          .map(([name, count]) => `  ${String(count).padStart(6)}  ${name}`)
          .join("\n") +
        "\n" +
        top.map(([reason, count]) => `  ${String(count).padStart(6)}  ${reason}`).join("\n"),
    );
    if (ONLY_CASE === null) {
      // Every outcome is exercised, and the frame parser, not just the decryption check.
      expect(counts.done).toBeGreaterThan(RUNS / 50);
      expect(counts["need-more"]).toBeGreaterThan(RUNS / 100);
      expect(reasons.size).toBeGreaterThan(20);
      expect(pushes).toBeGreaterThanOrEqual(RUNS);
    }
    expect(cpuMs).toBeLessThan((CPU_LIMIT_MS_PER_100K * Math.max(RUNS, 100_000)) / 100_000);
  },
  60_000 * Math.max(1, RUNS / 100_000),
);
