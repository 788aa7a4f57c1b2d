/**
 * The access log: one line per session when it closes, as logfmt text or one JSON object.
 *
 *   time=2026-11-25T16:17:19.123Z listener=redis client=127.0.0.1:51234 sni=- backend=redis
 *     target=127.0.0.1:6379 bytes_up=31 bytes_down=7 duration_ms=12 reason=client_fin
 *
 * (one line; `detail="…"` follows when the session has one, e.g. the connect error). In JSON
 * the same keys, numbers as numbers, and null for `sni`, `target` (none picked) and `detail`.
 * `sni` is the server name an SNI-mode listener read ("-" / null elsewhere); `client` is the
 * address a PROXY header gave where the listener accepts them, else the socket's peer.
 * A client that showed a verified certificate (a listener with `tls_policy.verify_client`)
 * adds `client_subject` and `client_fingerprint` (SHA-256) at the end, in both formats.
 * A UDP flow (one line when it ends) adds `protocol=udp packets_up=N packets_down=N`: the
 * datagrams each way; its bytes are the datagrams' bytes and `sni` a QUIC client's name.
 *
 * Lines are kept in memory and written at most every `flushInterval` ms (and once 64 KiB are
 * waiting): one write per second instead of one per session. `close()` writes the rest. A file
 * is opened for appending; `reopen()` (SIGUSR1 in the CLI) opens the path again after
 * logrotate moved it. Writes are synchronous (a blocking write of a regular file, or of
 * stdout): the log never grows without bound in memory, and nothing is lost on exit.
 *
 * The access log owns its file descriptor (not stdout's) and its timer.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { formatHostPort } from "../util/address.ts";
import type { FlowView, ListenerView, SessionObserver, SessionView } from "../proxy/handle.ts";
import type { ClientCertificate, RouteInfo } from "../proxy/route.ts";
import { defaultLogger, type Logger } from "../util/log.ts";
import { errorText } from "../util/errors.ts";

export type AccessLogFormat = "text" | "json";

export interface AccessLogOptions {
  /** `"stdout"` or a file path (appended to, created when missing). Required. */
  to: string;
  /** Default `"text"` (logfmt). */
  format?: AccessLogFormat;
  /** Longest time a line waits in memory, in ms. Default 1000. */
  flushInterval?: number;
  /** Where write errors are reported. Default: warnings and errors to stderr. */
  logger?: Logger;
}

export class AccessLogError extends Error {}

/** Lines waiting past this many characters are written at once. */
const FLUSH_CHARS = 64 * 1024;
const STDOUT_FD = 1;

export class AccessLog implements SessionObserver {
  readonly readsClientAddress = true;
  readonly to: string;
  readonly format: AccessLogFormat;
  /** Lines written since start (buffered ones included); lines lost to write errors. */
  lines = 0;
  lost = 0;
  private fd: number;
  private pending = "";
  /** Bytes that a non-blocking stdout did not take yet (EAGAIN), written before `pending`. */
  private stalled: Buffer | null = null;
  private readonly timer: ReturnType<typeof setInterval>;
  private readonly log: Logger;
  private lastWarning = 0;
  /** Listener, backend and target names as written in a text line. */
  private readonly names = new Map<string, string>();
  private timeMs = 0;
  private time = "";
  private done = false;

  /** Opens the file (or takes stdout). Throws AccessLogError naming the path. */
  constructor(options: AccessLogOptions) {
    this.to = options.to;
    this.format = options.format ?? "text";
    this.log = options.logger ?? defaultLogger;
    this.fd = this.to === "stdout" ? STDOUT_FD : openFile(this.to);
    this.timer = setInterval(flushAccessLog, options.flushInterval ?? 1000, this);
    this.timer.unref();
  }

  /** Observer hook: the session ended. */
  closed(session: SessionView): void {
    const now = Date.now();
    const reason = session.reason ?? "client_fin";
    this.add(
      now,
      session.listener,
      session.clientAddress(),
      session.sni,
      session.backend.name,
      session.targetKey,
      session.up.bytes,
      session.down.bytes,
      now - session.openedAt,
      reason,
      session.detail,
      (session as { info?: RouteInfo }).info?.clientCertificate ?? null,
    );
  }

  /** Observer hook: a UDP flow ended. */
  flowClosed(flow: FlowView): void {
    const now = Date.now();
    const { listener, up, down } = flow;
    const reason = flow.reason ?? "idle_timeout";
    const ms = now - flow.openedAt;
    this.add(now, listener, flow.clientAddress(), flow.sni, flow.backend.name, flow.targetKey, up.bytes, down.bytes, ms, reason, flow.detail, null, [
      up.datagrams,
      down.datagrams,
    ]);
  }

  /**
   * Observer hook: a connection was closed at accept, before it became a session
   * (max_connections reached, the open file limit, or draining). Logged with reason `refused`
   * and why as its detail: the same name as `Stats.refused`, the listener's `refused` count,
   * `tcprouter_connections_refused_total` and the status page's "refused".
   */
  refused(listener: ListenerView, clientHost: string, clientPort: number, why: string): void {
    const client = clientHost === "" ? "unix" : formatHostPort(clientHost, clientPort);
    this.add(Date.now(), listener, client, "", listener.backend?.name ?? "-", "-", 0, 0, 0, "refused", why);
  }

  private add(
    now: number,
    listener: ListenerView,
    client: string,
    sni: string,
    backend: string,
    target: string,
    up: number,
    down: number,
    ms: number,
    reason: string,
    detail: string,
    certificate: ClientCertificate | null = null,
    /** A UDP flow's datagrams up and down; null for a session. */
    datagrams: readonly [number, number] | null = null,
  ): void {
    if (this.done) return;
    if (now !== this.timeMs) {
      // Sessions that end in the same millisecond share the time text.
      this.timeMs = now;
      this.time = new Date(now).toISOString();
    }
    const time = this.time;
    const name = listener.name;
    let line: string;
    if (this.format === "json") {
      line = JSON.stringify({
        time,
        listener: name,
        client,
        sni: sni === "" ? null : sni,
        backend,
        target: target === "-" ? null : target,
        bytes_up: up,
        bytes_down: down,
        duration_ms: ms,
        reason,
        detail: detail === "" ? null : detail,
        ...(certificate === null ? {} : { client_subject: certificate.subject, client_fingerprint: certificate.fingerprint }),
        ...(datagrams === null ? {} : { protocol: "udp", packets_up: datagrams[0], packets_down: datagrams[1] }),
      });
    } else {
      line =
        // A client address never needs quotes; names and targets are quoted once and kept.
        `time=${time} listener=${this.quoted(name)} client=${client} sni=${sni === "" ? "-" : value(sni)} backend=${this.quoted(backend)} ` +
        `target=${this.quoted(target)} bytes_up=${up} bytes_down=${down} duration_ms=${ms} reason=${reason}`;
      if (detail !== "") line += ` detail=${JSON.stringify(detail)}`;
      if (certificate !== null) line += ` client_subject=${value(certificate.subject)} client_fingerprint=${certificate.fingerprint}`;
      if (datagrams !== null) line += ` protocol=udp packets_up=${datagrams[0]} packets_down=${datagrams[1]}`;
    }
    this.pending += line + "\n";
    this.lines++;
    if (this.pending.length >= FLUSH_CHARS) this.flush();
  }

  private quoted(text: string): string {
    let out = this.names.get(text);
    if (out === undefined) {
      if (this.names.size >= 10_000) this.names.clear();
      this.names.set(text, (out = value(text)));
    }
    return out;
  }

  /** Writes every waiting line. */
  flush(): void {
    if (this.pending === "" && this.stalled === null) return;
    let data = Buffer.from(this.pending);
    this.pending = "";
    if (this.stalled !== null) {
      data = Buffer.concat([this.stalled, data]);
      this.stalled = null;
    }
    let offset = 0;
    try {
      while (offset < data.length) offset += writeSync(this.fd, data, offset);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EAGAIN") {
        this.stalled = data.subarray(offset);
        return;
      }
      const lost = countLines(data.subarray(offset));
      this.lost += lost;
      const now = Date.now();
      if (now - this.lastWarning > 10_000) {
        this.lastWarning = now;
        this.log.warn(`access log ${this.to}: ${fileErrorText(error)}; ${lost} line${lost === 1 ? "" : "s"} lost`);
      }
    }
  }

  /**
   * Writes what is waiting, then opens the path again (for logrotate: the old file was moved
   * away). When the path cannot be opened, keeps writing to the old file, says why and
   * returns false. Stdout is not reopened.
   */
  reopen(): boolean {
    if (this.done || this.fd === STDOUT_FD) return false;
    this.flush();
    let fd: number;
    try {
      fd = openFile(this.to);
    } catch (error) {
      this.log.error((error as Error).message + "; still writing to the old file");
      return false;
    }
    closeSync(this.fd);
    this.fd = fd;
    return true;
  }

  /** Writes what is waiting and closes the file. Later sessions are not logged. Idempotent. */
  close(): void {
    if (this.done) return;
    this.flush();
    if (this.stalled !== null) {
      // stdout stayed busy: wait for it this once, rather than lose the last lines.
      const rest = this.stalled;
      this.stalled = null;
      writeAll(this.fd, rest);
    }
    this.done = true;
    clearInterval(this.timer);
    if (this.fd !== STDOUT_FD) closeSync(this.fd);
  }
}

function flushAccessLog(log: AccessLog): void {
  log.flush();
}

function openFile(path: string): number {
  try {
    return openSync(path, "a", 0o644);
  } catch (error) {
    throw new AccessLogError(`access log: cannot open ${path}: ${fileErrorText(error)}`);
  }
}

/** Blocking write of everything, retrying EAGAIN for up to a second. */
function writeAll(fd: number, data: Buffer): void {
  const deadline = Date.now() + 1000;
  let offset = 0;
  while (offset < data.length) {
    try {
      offset += writeSync(fd, data, offset);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EAGAIN" || Date.now() > deadline) return;
      Bun.sleepSync(5);
    }
  }
}

function countLines(data: Uint8Array): number {
  let n = 0;
  for (const byte of data) if (byte === 10) n++;
  return n;
}

/** A logfmt value: bare when it has no space, quote, `=` or control character; else a JSON string. */
function value(text: string): string {
  return text === "" ? '""' : /[\s"=\\\p{C}]/u.test(text) ? JSON.stringify(text) : text;
}

/** A file error in words (ENOENT: the directory is missing, since the file is created). */
function fileErrorText(error: unknown): string {
  return errorText(error, { ENOENT: "no such directory" });
}
