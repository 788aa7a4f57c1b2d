/**
 * Target sources: where a backend's targets come from besides its `targets` list (hostnames
 * looked up in DNS, the primary Redis Sentinel names; SRV records next). The router holds them
 * as one list and treats each alike:
 *
 *   prefetch(config)   before listening, and before a reload: look up what the config needs,
 *                      so the backends start with targets (never rejects)
 *   expand(targets)    while the router builds a backend: the targets to use now (a name
 *                      becomes its addresses); a source with nothing to expand has none
 *   update(config, backends)  once the new backends are live: follow them from now on,
 *                      replacing their targets through `Backend.replaceTargets`
 *   status()           what it reports, by backend name (`SourceStatus`)
 *   stop()             ends its timers, sockets and lookups; final
 *
 * Nothing outside backend/ names a particular source. What a source reports is generic: the
 * fields /status shows under the source's `kind` (`"sentinel": { master, primary, … }`), the
 * metrics it adds (labelled by backend), and one line for people. What readers need without a
 * live source (the status page's line, the supervisor's merge of its workers' /status, the
 * description `check` prints) is its `SourceKind`, listed in all.ts.
 */
import type { BackendConfig, Config } from "../../config/types.ts";
import type { Logger } from "../../util/log.ts";
import type { Backend, TargetOptions } from "../backend.ts";

/** What /status shows of a source for one backend: plain values only (they are merged across workers). */
export type SourceFields = Record<string, string | number>;

/** One metric sample a source adds for a backend; /metrics labels it `backend="…"`. */
export interface SourceMetric {
  /** The family name (`tcprouter_sentinel_switches_total`); the same name has the same help and type for every backend. */
  name: string;
  help: string;
  type: "counter" | "gauge";
  value: number;
}

/** A source's state for one backend. */
export interface SourceStatus {
  /** The source's kind: the key its `fields` have in the backend's /status entry. */
  kind: string;
  /** One line for people: its kind's `summary` filled with `fields`. */
  summary: string;
  fields: SourceFields;
  metrics: SourceMetric[];
}

export interface TargetSource {
  readonly kind: string;
  /** Looks up what `config` needs that is not known yet, for the `update(config)` that follows. Never rejects. */
  prefetch(config: Config): Promise<void>;
  /** The targets of `backend` to use now, from its configured ones (a hostname → one target per known address). */
  expand?(targets: readonly TargetOptions[], backend: BackendConfig): TargetOptions[];
  /** Makes `config` and its `backends` the live ones. Synchronous; called right after the router built them. */
  update(config: Config, backends: ReadonlyMap<string, Backend>): void;
  /** By backend name; backends this source does not serve are absent. */
  status(): Map<string, SourceStatus>;
  /** Ends every timer, socket and lookup. Final. */
  stop(): void;
}

/** What observers may see of a source (admin, metrics): its status, nothing that changes it. */
export type SourceView = Pick<TargetSource, "kind" | "status">;

/** A backend's targets as the router builds them: every source's `expand`, in order (`expandTargets`). */
export type Expand = (targets: readonly TargetOptions[], backend: BackendConfig) => TargetOptions[];

/** A kind of source, for readers that have no live source: the status page, the supervisor, `check`. */
export interface SourceKind<K extends string = string> {
  readonly kind: K;
  /** The status line with `{field}` placeholders (`"… primary of {master} is {primary} …"`); filled by `summarize`, here and in the status page. */
  readonly summary: string;
  /** The fields of one backend from several workers, each watching on its own, as one. */
  merge(into: SourceFields | undefined, from: SourceFields): SourceFields;
  /** What `check` prints instead of a backend's targets list when this source gives its targets; null when it does not. */
  describe(backend: BackendConfig): string | null;
  /** A new source, logging with its own tag. `expand` gives a backend's targets from every source, for one that replaces them on its own. */
  create(log: Logger, expand: Expand): TargetSource;
}

/** A kind's `summary` with each `{field}` replaced by its value (`?` for a field it lacks). */
export function summarize(template: string, fields: SourceFields): string {
  return template.replace(/\{(\w+)\}/g, (_, key: string) => String(fields[key] ?? "?"));
}

/** The targets of a backend after every source that expands targets did, in order. */
export function expandTargets(sources: readonly TargetSource[], targets: readonly TargetOptions[], backend: BackendConfig): TargetOptions[] {
  let out = [...targets];
  for (const source of sources) if (source.expand !== undefined) out = source.expand(out, backend);
  return out;
}

/** The statuses of every source that serves `backend`. */
export function statusOf(sources: readonly SourceView[], backend: string): SourceStatus[] {
  const out: SourceStatus[] = [];
  for (const source of sources) {
    const status = source.status().get(backend);
    if (status !== undefined) out.push(status);
  }
  return out;
}
