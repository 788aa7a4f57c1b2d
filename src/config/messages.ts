/**
 * How config errors read: the path of a value (`backends."my cache".targets[0]`), a short
 * description of what was found, a "did you mean" for a misspelt key, and the line of a TOML
 * syntax error.
 */
import type { Address } from "../util/address.ts";

/** `listeners[1].backend: message`, or the message alone for the whole file. */
export function at(path: readonly { key: unknown }[] | undefined, message: string): string {
  const text = pathText(path);
  return text === "" ? message : `${text}: ${message}`;
}

/** `backends."my cache".targets[0]`: keys that are not bare TOML keys are quoted. */
export function pathText(path: readonly { key: unknown }[] | undefined): string {
  let text = "";
  for (const { key } of path ?? []) {
    if (typeof key === "number") text += `[${key}]`;
    else text += (text === "" ? "" : ".") + (/^[A-Za-z0-9_-]+$/.test(String(key)) ? String(key) : JSON.stringify(String(key)));
  }
  return text;
}

export function describe(value: unknown): string {
  if (typeof value === "string") return value.length > 60 ? `${JSON.stringify(value.slice(0, 57)).slice(0, -1)}..."` : JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return "an array";
  return isRecord(value) ? "a table" : "a date or time";
}

/** The known key a typo most likely meant: same letters ignoring case, `-` and `_`, or ≤ 2 edits. */
export function closest(key: string, known: readonly string[]): string | null {
  const plain = (text: string) => text.toLowerCase().replace(/[-_]/g, "");
  let best: string | null = null;
  let bestDistance = 3;
  for (const candidate of known) {
    const distance = plain(candidate) === plain(key) ? 0 : editDistance(key, candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

export function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

/**
 * Bun's TOML parser does not say where it failed. The line is the first from which every
 * longer prefix of the file fails with the same message (a prefix that ends inside a
 * multi-line array fails too, but differently, or stops failing once the array closes).
 */
export function tomlErrorLine(text: string, message: string): number | null {
  const lines = text.split("\n");
  if (lines.length > 1000) return null; // each step parses the file again
  const failsSame = (count: number) => {
    try {
      Bun.TOML.parse(lines.slice(0, count).join("\n"));
      return false;
    } catch (error) {
      return (error as Error).message === message;
    }
  };
  let line = lines.length;
  while (line > 1 && failsSame(line - 1)) line--;
  return line;
}

/** A TOML table or JSON object; not an array, and not a TOML date or time (Temporal objects). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

export function isAddress(value: unknown): value is Address {
  return isRecord(value) && (value.kind === "tcp" || value.kind === "unix");
}
