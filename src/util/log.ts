/**
 * The one consola instance. Fancy on a TTY, plain text otherwise, or one JSON object per line
 * with `format: "json"`. Everything goes to stderr: stdout stays free for data (access logs).
 * Components take a tagged child (`log.withTag("listener")`) once, never per session.
 *
 * An event with data is logged as `log.info(event("listening on …", { listener, address }))`:
 * text logs show the message, JSON logs carry the fields too, beside `time`, `level`,
 * `component` and `message`.
 */
import { createConsola, type ConsolaInstance, type ConsolaReporter, type LogObject } from "consola";

export type LogLevel = "error" | "warn" | "info" | "debug";
export type LogFormat = "fancy" | "json";
export type Logger = ConsolaInstance;

export const LOG_LEVELS: Record<LogLevel, number> = { error: 0, warn: 1, info: 3, debug: 4 };
/** consola's numeric level at which per-session debug lines are written. */
export const DEBUG = 4;

function messageOf(entry: LogObject): string {
  return entry.args.map((arg) => (typeof arg === "string" ? arg : arg instanceof Error ? arg.message : JSON.stringify(arg))).join(" ");
}

/** Fields of an event; consola keeps these names for itself. */
type Reserved = "date" | "args" | "type" | "level" | "tag" | "message" | "additional" | "title";
export type EventFields = Record<string, string | number | boolean | null | readonly (string | number)[]> & { [K in Reserved]?: never };

/** A log entry with a message and structured fields (see the top of this file). */
export function event(message: string, fields: EventFields): Record<string, unknown> {
  return { ...fields, message };
}

/** What consola puts on every entry; everything else on an entry came from `event()`. */
const ENTRY_KEYS = new Set(["date", "args", "type", "level", "tag", "message", "additional", "title"]);

const jsonReporter: ConsolaReporter = {
  log(entry) {
    const line: Record<string, unknown> = { time: entry.date.toISOString(), level: entry.type, message: messageOf(entry) };
    if (entry.tag) line.component = entry.tag;
    for (const key in entry) if (!ENTRY_KEYS.has(key) && !(key in line)) line[key] = (entry as Record<string, unknown>)[key];
    process.stderr.write(JSON.stringify(line) + "\n");
  },
};

/** Plain text, one line per entry, for logs that are not on a terminal. */
const textReporter: ConsolaReporter = {
  log(entry) {
    const tag = entry.tag ? ` [${entry.tag}]` : "";
    process.stderr.write(`${entry.date.toISOString()} ${entry.type.toUpperCase()}${tag} ${messageOf(entry)}\n`);
  },
};

export function createLogger(options: { level?: LogLevel; format?: LogFormat } = {}): Logger {
  const logger = createConsola({
    level: LOG_LEVELS[options.level ?? "info"],
    stdout: process.stderr,
    stderr: process.stderr,
    formatOptions: { date: false, colors: process.stderr.isTTY === true },
  });
  if (options.format === "json") logger.setReporters([jsonReporter]);
  else if (!process.stderr.isTTY) logger.setReporters([textReporter]);
  return logger;
}

/** The logger used when a caller of the library gives none: warnings and errors only. */
export const defaultLogger: Logger = createLogger({ level: "warn" });

/**
 * Lets one line through per interval and counts the rest, so a burst (a dead target, a full
 * listener) logs once instead of once per connection.
 */
export class LogLimiter {
  private last = -Infinity;
  private suppressed = 0;

  constructor(private readonly intervalMs = 1000) {}

  /** Returns how many lines were held back since the last one let through, or -1 to hold this one back. */
  allow(): number {
    const now = performance.now();
    if (now - this.last < this.intervalMs) {
      this.suppressed++;
      return -1;
    }
    this.last = now;
    const held = this.suppressed;
    this.suppressed = 0;
    return held;
  }
}

/** ` (and 12 more)` for a LogLimiter count, or nothing. */
export function heldBack(count: number): string {
  return count > 0 ? ` (and ${count} more since the last line)` : "";
}
