/**
 * The router under test: `startRouter(toml)` runs a whole config with `createRouter`,
 * `startForward(options)` the one-route `forward()`. Both keep their log lines (debug unless
 * told) and stop without a drain when disposed (`await using`).
 */
import {
  createRouter,
  forward,
  parseConfig,
  type Config,
  type ForwardHandle,
  type ForwardOptions,
  type RouterHandle,
  type TargetState,
} from "../../src/index.ts";
import { captureLogger, HOST, ROOT, type LogLines } from "./net.ts";

export type RouterUnderTest = RouterHandle &
  LogLines &
  AsyncDisposable & {
    config: Config;
    /** The first listener's bound port. */
    port: number;
    /** The bound port of listener `index`. */
    portOf(index: number): number;
    /** The live target state of a backend's target, by the target's port. */
    target(port: number, backend?: string): TargetState;
  };

/**
 * `createRouter(parseConfig(toml))` with a logger that keeps its lines (debug, or consola
 * `logLevel`). Relative file paths in the TOML are taken from test/ (`fixtures/tls/…`).
 */
export async function startRouter(toml: string, logLevel?: number): Promise<RouterUnderTest> {
  const config = parseConfig(toml, "toml", `${ROOT}test/router.toml`);
  const log = captureLogger(logLevel);
  const handle = await createRouter(config, { logger: log.logger });
  return {
    ...handle,
    config,
    port: handle.listeners[0]!.port,
    portOf: (index) => handle.listeners[index]!.port,
    lines: log.lines,
    matching: log.matching,
    target(port, backend = "redis") {
      const found = handle
        .backends()
        .get(backend)
        ?.find((t) => t.address.kind === "tcp" && t.address.port === port);
      if (found === undefined) throw new Error(`no target on port ${port} in backend ${backend}`);
      return found;
    },
    async [Symbol.asyncDispose]() {
      await handle.stop({ drainTimeout: 0 });
    },
  };
}

export type Forwarder = ForwardHandle & LogLines & AsyncDisposable;

/** `forward()` on 127.0.0.1:0 with a capturing logger; disposing stops it with no drain. */
export async function startForward(options: Omit<ForwardOptions, "listen"> & { listen?: string }): Promise<Forwarder> {
  const log = captureLogger();
  const handle = await forward({ listen: `${HOST}:0`, logger: log.logger, ...options });
  return {
    ...handle,
    stats: handle.stats,
    lines: log.lines,
    matching: log.matching,
    async [Symbol.asyncDispose]() {
      await handle.stop({ drainTimeout: 0 });
    },
  };
}
