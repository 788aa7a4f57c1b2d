/**
 * One home for error codes and their words: what a bind, a connect or a file open that failed
 * says in a log line or a one-line error. Bun reports most socket errors with a Node-style
 * `code` (ECONNREFUSED) and a few with its own (ConnectionRefused, FailedToOpenSocket).
 */

/** Words for the codes a user meets, the same everywhere. */
const WORDS: Readonly<Record<string, string>> = {
  ECONNREFUSED: "connection refused",
  ConnectionRefused: "connection refused",
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "address not available on this machine",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EISDIR: "is a directory",
  ENOSPC: "no space left on device",
  ETIMEDOUT: "timeout",
};

/** The error's code (ECONNREFUSED, EADDRINUSE, …), or undefined when it has none. */
export function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** The first line of an error's message (Bun's messages may go on with hints). */
export function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n")[0]!;
}

/**
 * An error in words: `overrides` first (what a code means here: ENOENT is "no such directory"
 * for a bind, "no such socket" for a client), then the common words, then the code itself
 * (`unknown: "code"`, for log lines that grep well) or the message's first line.
 */
export function errorText(error: unknown, overrides: Readonly<Record<string, string>> = {}, unknown: "code" | "message" = "code"): string {
  const code = errorCode(error);
  if (code !== undefined) {
    const words = overrides[code] ?? WORDS[code];
    if (words !== undefined) return words;
    if (unknown === "code") return code;
  }
  return firstLine(error);
}

/** A bind error in one line: the errno in words, or the first line of the message. */
export function listenErrorText(error: unknown): string {
  return errorText(error, { ENOENT: "no such directory" }, "message");
}

/** A connect error as a log line has it: the bare code where there is one (ECONNREFUSED), else the message. */
export function connectErrorText(error: unknown): string {
  return errorCode(error) ?? firstLine(error);
}

/**
 * The socket and the error of a `Bun.udpSocket` error handler: Bun 1.4.5 calls it as
 * `error(error)` with the socket as `this`, where its types say `error(socket, error)`. Both
 * forms are read, so a fixed Bun changes nothing here.
 */
export function udpErrorArgs<S>(self: unknown, first: unknown, second?: unknown): [S | undefined, unknown] {
  return first instanceof Error ? [self as S | undefined, first] : [first as S | undefined, second];
}
