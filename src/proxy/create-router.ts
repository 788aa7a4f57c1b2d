/**
 * The library's entry for a whole config: `createRouter(config, options)` starts a Router
 * (router.ts) and returns the handle its user holds (RouterHandle, handle.ts): the bound
 * listeners, resolve, reload, stats, backends and stop. `forward({ listen, to })` (forward.ts)
 * is the one-route form.
 */
import { formatAddress } from "../util/address.ts";
import { DEFAULTS } from "../config/defaults.ts";
import type { Config } from "../config/types.ts";
import { parseDuration } from "../util/duration.ts";
import { ListenError } from "./listener.ts";
import { Handover } from "./handover.ts";
import { defaultLogger } from "../util/log.ts";
import type { RouterHandle, RouterOptions } from "./handle.ts";
import { Router } from "./router.ts";

/** Library options that are wrong (forward.ts); the message names the option. */
export class OptionsError extends Error {}

/**
 * Opens every listener of a validated config. Rejects with ListenError (a one-line message)
 * after closing whatever it had opened.
 */
export async function createRouter(config: Config, options: RouterOptions = {}): Promise<RouterHandle> {
  const highWaterMark = Math.max(1, options.highWaterMark ?? DEFAULTS.highWaterMark);
  const limits = { highWaterMark, lowWaterMark: Math.min(options.lowWaterMark ?? DEFAULTS.lowWaterMark, highWaterMark) };
  const log = options.logger ?? defaultLogger;
  const router = new Router(config.defaults.drainTimeout, limits, log);
  router.reusePort = options.reusePort ?? false;
  router.observers = [...(options.observers ?? [])];
  router.inherited = new Map((options.inherited ?? []).map((listener) => [listener.address, listener]));
  await router.start(config);
  return {
    view: router,
    handover: new Handover(router),
    get listeners() {
      return [...router.listeners, ...router.udp.listeners].map((listener) => {
        const bound = listener.address;
        return { name: listener.options.name, address: formatAddress(bound), port: bound.kind === "tcp" ? bound.port : 0 };
      });
    },
    resolve: async (next) => void (await Promise.all(router.sources.map((source) => source.prefetch(next)))),
    reload: (next) => {
      const summary = router.reload(next);
      router.counters.reloads++;
      return summary;
    },
    stats: () => router.stats(),
    backends: () => new Map([...router.backends].map(([name, backend]) => [name, backend.targets])),
    stop: (stopOptions) => router.stop(stopOptions?.drainTimeout === undefined ? undefined : parseDuration(stopOptions.drainTimeout)),
  };
}

export { ListenError };
