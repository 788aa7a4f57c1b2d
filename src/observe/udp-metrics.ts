/**
 * Metrics of UDP listeners (docs/udp.md): flows that ended, by listener and close reason, and
 * how long they lasted (kept here, by listener name, across reloads); the rest (flows open,
 * datagrams, bytes, drops) is read from the listeners when scraped.
 */
import type { CloseReason, FlowView, RouterView } from "../proxy/handle.ts";
import { escapeLabel, Histogram, type Output, SESSION_BUCKETS } from "./prometheus.ts";

/** UDP close reasons exported at zero from the start (others from their first flow). */
export const FLOW_CLOSE_REASONS: readonly string[] = [
  "idle_timeout",
  "responses",
  "port_unreachable",
  "no_target",
  "no_route",
  "hello_timeout",
  "target_down",
  "drained",
] satisfies CloseReason[];

/** One UDP listener's flows that ended: by close reason, and how long they lasted. */
interface FlowCell {
  /** `listener="…"` */
  readonly labels: string;
  readonly closed: Record<string, number>;
  readonly duration: Histogram;
}

export class FlowMetrics {
  private readonly cells = new Map<string, FlowCell>();

  /** A flow ended. */
  closed(flow: FlowView): void {
    const cell = this.flowCell(flow.listener.name);
    const reason = flow.reason ?? "idle_timeout";
    cell.closed[reason] = (cell.closed[reason] ?? 0) + 1;
    cell.duration.observe((Date.now() - flow.openedAt) / 1000);
  }

  /** The UDP families (docs/udp.md), when the router has UDP listeners or had some. */
  write(out: Output, listeners: RouterView["udpListeners"] & object): void {
    for (const listener of listeners) this.flowCell(listener.name);
    if (this.cells.size === 0) return;
    const labels = (name: string) => this.flowCell(name).labels;
    out.family("tcprouter_udp_flows_active", "gauge", "UDP flows open now (one per client address:port), by listener.");
    for (const listener of listeners) out.sample("tcprouter_udp_flows_active", labels(listener.name), listener.active);
    out.family("tcprouter_udp_flows_total", "counter", "UDP flows started, by listener.");
    for (const listener of listeners) out.sample("tcprouter_udp_flows_total", labels(listener.name), listener.accepted);
    out.family("tcprouter_udp_flows_closed_total", "counter", "UDP flows ended, by listener and close reason.");
    for (const cell of this.cells.values())
      for (const [reason, count] of Object.entries(cell.closed))
        out.sample("tcprouter_udp_flows_closed_total", `${cell.labels},reason="${escapeLabel(reason)}"`, count);
    out.family("tcprouter_udp_flow_duration_seconds", "histogram", "How long UDP flows lasted, from their first datagram to their end, by listener.");
    for (const cell of this.cells.values()) out.histogram("tcprouter_udp_flow_duration_seconds", cell.labels, cell.duration);
    out.family(
      "tcprouter_udp_datagrams_total",
      "counter",
      'Datagrams read from clients (direction="up", dropped ones included) and from upstreams (direction="down"), by listener.',
    );
    for (const listener of listeners)
      for (const [direction, count] of [
        ["up", listener.datagramsUp],
        ["down", listener.datagramsDown],
      ] as const)
        out.sample("tcprouter_udp_datagrams_total", `${labels(listener.name)},direction="${direction}"`, count);
    out.family("tcprouter_udp_bytes_total", "counter", "Bytes of those datagrams (PROXY headers not counted), by listener and direction.");
    for (const listener of listeners)
      for (const [direction, count] of [
        ["up", listener.bytesUp],
        ["down", listener.bytesDown],
      ] as const)
        out.sample("tcprouter_udp_bytes_total", `${labels(listener.name)},direction="${direction}"`, count);
    out.family(
      "tcprouter_udp_dropped_total",
      "counter",
      "Datagrams not forwarded, by listener and reason (limits, ACLs, no target or route, bad QUIC Initials, full buffers).",
    );
    for (const listener of listeners)
      for (const [reason, count] of Object.entries(listener.dropped))
        out.sample("tcprouter_udp_dropped_total", `${labels(listener.name)},reason="${reason}"`, count);
  }

  private flowCell(name: string): FlowCell {
    let cell = this.cells.get(name);
    if (cell === undefined) {
      const closed: Record<string, number> = {};
      for (const reason of FLOW_CLOSE_REASONS) closed[reason] = 0;
      cell = { labels: `listener="${escapeLabel(name)}"`, closed, duration: new Histogram(SESSION_BUCKETS) };
      this.cells.set(name, cell);
    }
    return cell;
  }
}
