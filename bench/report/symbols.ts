/**
 * The syscalls suite's symbol tables (--symbols): per row, the symbols whose CPU per request
 * differs most between contenders, in µs per request, each contender beside bun-floor.
 */
import type { ContenderName } from "../contenders/forwarders.ts";
import type { RedisRow } from "../suites/workloads/redis.ts";
import { symbolLines, type SymbolLine, type SymbolRun } from "../suites/workloads/tracing.ts";
import type { Table } from "./table.ts";

const FLOOR: ContenderName = "bun-floor";
const round3 = (x: number) => Math.round(x * 1000) / 1000;
/** A difference in µs: signed, "0.00" when it rounds to nothing. */
const fmtDiff = (x: number) => (Math.abs(x) < 0.005 ? "0.00" : `${x > 0 ? "+" : ""}${x.toFixed(2)}`);

/** A symbol line for the JSON: µs per request to 3 decimals, the samples, and each contender minus bun-floor. */
function symbolJson(line: SymbolLine, others: string[]) {
  const us = (name: string) => line.usPerRequest[name]!;
  return {
    symbol: line.symbol,
    usPerRequest: Object.fromEntries(Object.keys(line.usPerRequest).map((name) => [name, round3(us(name))])),
    samples: line.samples,
    ...(others.length > 0 ? { vsBunFloor: Object.fromEntries(others.map((name) => [name, round3(us(name) - us(FLOOR))])) } : {}),
    spread: round3(line.spread),
  };
}

/**
 * One row's symbol table (--symbols of the syscalls suite): the top symbols by spread, then the kernel, user-space and
 * total sums; columns: each contender's µs per request, then each other contender minus bun-floor
 * when bun-floor has samples. A contender without perf runs shows "FAILED".
 */
export function symbolsOf(row: RedisRow, contenders: ContenderName[], runsOf: (name: ContenderName) => SymbolRun[], top: number) {
  const lines = symbolLines(Object.fromEntries(contenders.map((name) => [name, runsOf(name)])), top);
  const measured = contenders.filter((name) => runsOf(name).length > 0);
  const others = measured.includes(FLOOR) ? measured.filter((name) => name !== FLOOR) : [];
  const cellsOf = (line: SymbolLine) => [
    line.symbol,
    ...contenders.map((name) => (line.usPerRequest[name] === undefined ? "FAILED" : line.usPerRequest[name].toFixed(2))),
    ...others.map((name) => fmtDiff(line.usPerRequest[name]! - line.usPerRequest[FLOOR]!)),
  ];
  const sums = [lines.kernel, lines.user, lines.total];
  const table: Table = {
    head: ["symbol", ...contenders, ...others.map((name) => `${name} vs ${FLOOR}`)],
    rows: [...lines.top.map(cellsOf), ...sums.map(cellsOf)],
    text: 1,
    groups: [...lines.top.map(() => "top"), ...sums.map(() => "sums")],
  };
  return {
    row: row.id,
    title: row.title,
    top,
    rounds: Object.fromEntries(measured.map((name) => [name, runsOf(name).length])),
    requests: lines.requests,
    lines: lines.top.map((line) => symbolJson(line, others)),
    kernel: symbolJson(lines.kernel, others),
    user: symbolJson(lines.user, others),
    total: symbolJson(lines.total, others),
    table,
  };
}

export function symbolHeading(t: ReturnType<typeof symbolsOf>): string {
  const per = t.row === "ping-k0" ? "µs per request = per new connection" : "µs per request";
  const rounds = Math.max(0, ...Object.values(t.rounds));
  return `${t.row}: ${t.title}: top ${t.top} symbols by difference between contenders, ${per} (CPU samples summed over ${rounds} round(s))`;
}
