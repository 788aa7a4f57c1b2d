/**
 * What the Sentinel target source (sentinel.ts) reports, in the generic shape of source.ts:
 * its /status fields (`"sentinel": { master, primary, switches, … }`), its metrics, its status
 * line, how the supervisor merges its workers' fields, and what `check` prints for it.
 */
import type { BackendConfig } from "../../config/types.ts";
import { formatAddress } from "../../util/address.ts";
import { formatDuration } from "../../util/duration.ts";
import { summarize, type SourceFields, type SourceStatus } from "./source.ts";

/** What `/status` shows of a sentinel backend, under `sentinel`. */
export type SentinelStatus = {
  master: string;
  /** The primary now ("-" when none is known; "mixed" in a supervisor's merge while workers disagree). */
  primary: string;
  /** Switches since start (events and polls). */
  switches: number;
  /** ms since the epoch of the last switch; 0 = none. */
  lastSwitch: number;
  /** Sentinels whose +switch-master subscription is open now. */
  subscribed: number;
  sentinels: number;
};

/** The status page's and the status' line. */
export const SENTINEL_SUMMARY = "Sentinel: primary of {master} is {primary}, {switches} switches, {subscribed}/{sentinels} sentinels subscribed";

/** The status of one sentinel backend in the shape every source reports. */
export function sentinelSourceStatus(fields: SentinelStatus): SourceStatus {
  return {
    kind: "sentinel",
    summary: summarize(SENTINEL_SUMMARY, fields),
    fields,
    metrics: [
      {
        name: "tcprouter_sentinel_switches_total",
        type: "counter",
        help: "Times a sentinel backend's primary moved (a +switch-master event or a poll), by backend.",
        value: fields.switches,
      },
      {
        name: "tcprouter_sentinel_subscriptions",
        type: "gauge",
        help: "Sentinels whose +switch-master subscription is open now, by backend.",
        value: fields.subscribed,
      },
      {
        name: "tcprouter_sentinel_primary_known",
        type: "gauge",
        help: "1 when a majority of the sentinels named a primary (the backend has a target), by backend.",
        value: fields.primary === "-" ? 0 : 1,
      },
    ],
  };
}

/**
 * Each worker watches the sentinels on its own: the merged primary is theirs when they agree
 * ("mixed" while they do not), switches and the last switch are the most any worker saw, and
 * `subscribed` the fewest open subscriptions of any worker.
 */
export function mergeSentinel(into: SourceFields | undefined, from: SourceFields): SourceFields {
  if (into === undefined) return { ...from };
  const most = (key: string) => Math.max(Number(into[key] ?? 0), Number(from[key] ?? 0));
  return {
    ...into,
    primary: into.primary === from.primary ? (into.primary ?? "-") : "mixed",
    switches: most("switches"),
    lastSwitch: most("lastSwitch"),
    subscribed: Math.min(Number(into.subscribed ?? 0), Number(from.subscribed ?? 0)),
  };
}

/** `check`'s line for a sentinel backend's target; null for a backend without `sentinel`. */
export function describeSentinel(backend: BackendConfig): string | null {
  const sentinel = backend.sentinel ?? null;
  if (sentinel === null) return null;
  const password = sentinel.auth === null ? "" : `, password from ${sentinel.auth.password.source}`;
  return (
    `the primary of ${sentinel.master} as a majority of ${sentinel.sentinels.map(formatAddress).join(", ")} names it ` +
    `(+switch-master, polled every ${formatDuration(sentinel.pollInterval)}${password})`
  );
}
