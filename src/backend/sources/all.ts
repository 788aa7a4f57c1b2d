/**
 * Every kind of target source (source.ts), in the order the router runs them: DNS expands
 * hostnames first; SRV adds the targets of SRV names; Sentinel then gives its backends their
 * one target. A source that replaces a backend's targets on its own (a name's answer changed)
 * builds them as the router does, through every source, so one backend may have hostname and
 * SRV targets. A new source is a new file with its `SourceKind`, added here; nothing outside
 * backend/ changes.
 */
import type { BackendConfig } from "../../config/types.ts";
import type { Logger } from "../../util/log.ts";
import { DNS } from "./discovery.ts";
import { SENTINEL } from "./sentinel.ts";
import { SRV } from "./srv.ts";
import { type Expand, expandTargets, type SourceFields, type TargetSource } from "./source.ts";

export const SOURCE_KINDS = [DNS, SRV, SENTINEL] as const;

export type SourceKindName = (typeof SOURCE_KINDS)[number]["kind"];

/** What a backend's /status entry carries of its sources: each one's fields under its kind (`sentinel: { master, primary, … }`). */
export type SourceEntries = { [K in SourceKindName]?: SourceFields };

/** One new source of every kind, for a router. */
export function createSources(log: Logger): TargetSource[] {
  const sources: TargetSource[] = [];
  const expand: Expand = (targets, backend) => expandTargets(sources, targets, backend);
  for (const kind of SOURCE_KINDS) sources.push(kind.create(log, expand));
  return sources;
}

/** What `check` prints for a backend whose targets come from a source (instead of its targets list); null for listed targets. */
export function describeSource(backend: BackendConfig): string | null {
  for (const kind of SOURCE_KINDS) {
    const line = kind.describe(backend);
    if (line !== null) return line;
  }
  return null;
}

/** The kinds' status lines with `{field}` placeholders, by kind (for the status page, which fills them from /status). */
export function summaryTemplates(): Record<string, string> {
  return Object.fromEntries(SOURCE_KINDS.filter((kind) => kind.summary !== "").map((kind) => [kind.kind, kind.summary]));
}

/** Merges the source fields of one backend from two workers' /status, kind by kind. */
export function mergeSources(into: SourceEntries, from: SourceEntries): void {
  for (const kind of SOURCE_KINDS) {
    const fields = from[kind.kind];
    if (fields !== undefined) into[kind.kind] = kind.merge(into[kind.kind], fields);
  }
}

/** The `{ kind: fields }` entries for a backend's /status from its sources' statuses. */
export function sourceEntries(statuses: readonly { kind: string; fields: SourceFields }[]): SourceEntries {
  const out: Record<string, SourceFields> = {};
  for (const status of statuses) out[status.kind] = status.fields;
  return out as SourceEntries;
}
