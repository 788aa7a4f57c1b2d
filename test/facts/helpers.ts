/**
 * Helpers for the socket facts: a child process whose stdout is read as JSON lines (the
 * children under children/ report each step as one line), killed with every process it named.
 */
import { waitFor, within } from "../helpers/net.ts";

export const CHILDREN = new URL("./children/", import.meta.url).pathname;

/** A process started by a fact test; its stdout is parsed as one JSON object per line. */
export class LineChild implements AsyncDisposable {
  readonly lines: Record<string, unknown>[] = [];
  stderrText = "";
  /** More processes to kill on dispose (grandchildren the child started and named). */
  readonly alsoKill: number[] = [];
  private readers: Promise<void>[];

  constructor(readonly proc: Bun.Subprocess<"pipe", "pipe", "pipe">) {
    this.readers = [this.readLines(), this.readStderr()];
  }

  private async readLines(): Promise<void> {
    let rest = "";
    const decoder = new TextDecoder();
    for await (const chunk of this.proc.stdout) {
      rest += decoder.decode(chunk, { stream: true });
      for (let end = rest.indexOf("\n"); end >= 0; end = rest.indexOf("\n")) {
        const line = rest.slice(0, end);
        rest = rest.slice(end + 1);
        try {
          this.lines.push(JSON.parse(line));
        } catch {
          this.lines.push({ text: line });
        }
      }
    }
  }

  private async readStderr(): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of this.proc.stderr) this.stderrText += decoder.decode(chunk, { stream: true });
  }

  /** The first line that has `key`, waiting for it. */
  async line(key: string, ms = 5000): Promise<Record<string, unknown>> {
    await waitFor(() => this.lines.some((line) => key in line), ms, `a "${key}" line (have ${JSON.stringify(this.lines)}; stderr ${this.stderrText})`);
    return this.lines.find((line) => key in line)!;
  }

  has(key: string): boolean {
    return this.lines.some((line) => key in line);
  }

  send(line: string): void {
    this.proc.stdin.write(`${line}\n`);
    this.proc.stdin.flush();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const pid of this.alsoKill) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGKILL");
    await within(this.proc.exited, 5000, `process ${this.proc.pid} to exit`);
    await within(Promise.all(this.readers), 5000, `the output of ${this.proc.pid}`).catch(() => {});
  }
}

/** Starts `bun children/NAME ...args` with piped stdin, stdout and stderr (and `fd` at stdio[3], if given). */
export function startChild(name: string, args: string[] = [], fd?: number): LineChild {
  const stdio = ["pipe", "pipe", "pipe", ...(fd === undefined ? [] : [fd])] as unknown as ["pipe", "pipe", "pipe"];
  const proc = Bun.spawn([process.execPath, CHILDREN + name, ...args], { stdio });
  return new LineChild(proc);
}
