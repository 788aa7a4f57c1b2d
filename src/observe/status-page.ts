/**
 * The live status page served at `/` by the admin listener: one self-contained HTML document
 * (inline CSS and JS, no external assets, works offline). It polls `status` (relative, so it
 * also works behind a path prefix) every second, fills a table per listener and per backend,
 * and draws the last five minutes of sessions and throughput as inline SVG. The first request
 * asks for the server's per-second samples (`status?history`), so the charts start full.
 *
 * Cells a test or a script may read carry `data-listener` / `data-backend` / `data-target`
 * on their row and `data-field` on the cell; a target source's line under a backend's title
 * carries `data-source` (its kind), its text the kind's summary filled from /status.
 */
import { summaryTemplates } from "../backend/sources/all.ts";

export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tcprouter status</title>
<style>
  :root { color-scheme: light dark; --fg: #1d2330; --muted: #6b7280; --bg: #fbfbfc; --card: #fff; --line: #e5e7eb;
          --up: #2563eb; --down: #d97706; --ok: #15803d; --bad: #b91c1c; }
  @media (prefers-color-scheme: dark) {
    :root { --fg: #e5e7eb; --muted: #9ca3af; --bg: #111318; --card: #1a1d24; --line: #2d323c; --up: #60a5fa; --down: #fbbf24; --ok: #4ade80; --bad: #f87171; }
  }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
  header { display: flex; flex-wrap: wrap; gap: 12px; align-items: baseline; padding: 14px 20px; border-bottom: 1px solid var(--line); }
  header h1 { font-size: 18px; margin: 0; }
  .muted { color: var(--muted); }
  .badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600; color: #fff; background: var(--muted); }
  .badge.ok { background: var(--ok); } .badge.bad { background: var(--bad); }
  main { padding: 16px 20px; display: grid; gap: 16px; max-width: 1200px; }
  .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 10px; }
  .card, section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
  .card .value { font-size: 22px; font-variant-numeric: tabular-nums; }
  .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(360px, 1fr)); gap: 16px; }
  h2 { font-size: 15px; margin: 0 0 8px; }
  svg { width: 100%; height: 160px; display: block; }
  svg .grid { stroke: var(--line); stroke-width: 1; }
  svg path { fill: none; stroke-width: 2; vector-effect: non-scaling-stroke; }
  svg text { fill: var(--muted); font-size: 10px; }
  .legend span { margin-right: 14px; }
  .legend .span { float: right; margin-right: 0; }
  .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th, td { text-align: right; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th:first-child, td:first-child, th.text, td.text { text-align: left; }
  th { font-weight: 600; color: var(--muted); font-size: 12px; }
  #error { color: var(--bad); }
</style>
</head>
<body>
<header>
  <h1>tcprouter</h1>
  <span id="state" class="badge">loading</span>
  <span class="muted">version <span id="version">-</span> · up <span id="uptime">-</span> · updated <span id="updated">never</span></span>
  <span id="error"></span>
</header>
<main>
  <div class="cards">
    <div class="card"><div class="muted">sessions open</div><div class="value" id="total-active">-</div></div>
    <div class="card"><div class="muted">sessions total</div><div class="value" id="total-sessions">-</div></div>
    <div class="card"><div class="muted">bytes up</div><div class="value" id="total-up">-</div></div>
    <div class="card"><div class="muted">bytes down</div><div class="value" id="total-down">-</div></div>
    <div class="card"><div class="muted">connect failures</div><div class="value" id="total-failures">-</div></div>
    <div class="card"><div class="muted">refused</div><div class="value" id="total-refused">-</div></div>
  </div>
  <div class="charts">
    <section>
      <h2>Sessions</h2>
      <svg id="chart-sessions" viewBox="0 0 600 160" preserveAspectRatio="none" role="img" aria-label="sessions over the last five minutes"></svg>
      <div class="legend muted"><span><i class="swatch" style="background:var(--up)"></i>open</span><span><i class="swatch" style="background:var(--down)"></i>new per second</span><span class="span">last 5 minutes</span></div>
    </section>
    <section>
      <h2>Throughput</h2>
      <svg id="chart-bytes" viewBox="0 0 600 160" preserveAspectRatio="none" role="img" aria-label="throughput over the last five minutes"></svg>
      <div class="legend muted"><span><i class="swatch" style="background:var(--up)"></i>up (client → upstream)</span><span><i class="swatch" style="background:var(--down)"></i>down</span><span class="span">last 5 minutes</span></div>
    </section>
  </div>
  <section>
    <h2>Listeners</h2>
    <table>
      <thead><tr><th>listener</th><th class="text">address</th><th class="text">backend</th><th>open</th><th>accepted</th><th>refused</th><th>bytes up</th><th>bytes down</th><th>up/s</th><th>down/s</th></tr></thead>
      <tbody id="listeners"></tbody>
    </table>
  </section>
  <div id="backends"></div>
</main>
<script>
"use strict";
const WINDOW = 300; // seconds of history in the charts
const history = []; // { t, active, newPerSec, upPerSec, downPerSec }
let previous = null;
const perListener = new Map(); // name -> { t, up, down }

const $ = (id) => document.getElementById(id);
// Each target source's status line, by its key in a backend's /status entry; {field} is that field.
const SOURCE_LINES = ${JSON.stringify(summaryTemplates())};

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 2 : 1)) + " " + units[i];
}
const count = (n) => Number(n).toLocaleString("en-US");
function duration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return d > 0 ? d + "d " + h + "h" : h > 0 ? h + "h " + m + "m" : m > 0 ? m + "m " + (s % 60) + "s" : s + "s";
}

function cell(text, field, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (field) td.dataset.field = field;
  if (cls) td.className = cls;
  return td;
}

function row(attrs, cells) {
  const tr = document.createElement("tr");
  for (const [k, v] of Object.entries(attrs)) tr.dataset[k] = v;
  for (const c of cells) tr.appendChild(c);
  return tr;
}

function renderListeners(s, t) {
  const body = $("listeners");
  const rows = s.listeners.map((l) => {
    const last = perListener.get(l.name);
    const dt = last ? (t - last.t) / 1000 : 0;
    const up = last && dt > 0 ? (l.bytesUp - last.up) / dt : 0;
    const down = last && dt > 0 ? (l.bytesDown - last.down) / dt : 0;
    perListener.set(l.name, { t, up: l.bytesUp, down: l.bytesDown });
    // A UDP listener: its flows in open/accepted, datagrams dropped at a limit in refused, the rest in a tooltip.
    const udp = l.protocol === "udp" ? l.udp : null;
    const tr = row({ listener: l.name }, [
      cell(l.name, "name"), cell((udp ? "udp " : "") + l.address, "address", "text"), cell(l.backend, "backend", "text"),
      cell(count(l.active), "active"), cell(count(l.accepted), "accepted"), cell(count(l.refused), "refused"),
      cell(bytes(l.bytesUp), "bytesUp"), cell(bytes(l.bytesDown), "bytesDown"),
      cell(bytes(Math.max(0, up)) + "/s", "upPerSec"), cell(bytes(Math.max(0, down)) + "/s", "downPerSec"),
    ]);
    if (udp) {
      const dropped = Object.entries(udp.dropped).filter(([, n]) => n > 0).map(([reason, n]) => reason + " " + count(n));
      tr.title = "UDP flows; datagrams up " + count(udp.datagramsUp) + ", down " + count(udp.datagramsDown) + (dropped.length ? "; dropped: " + dropped.join(", ") : "");
    }
    return tr;
  });
  body.replaceChildren(...rows);
}

function renderBackends(s) {
  const sections = s.backends.map((b) => {
    const section = document.createElement("section");
    section.dataset.backend = b.name;
    const h = document.createElement("h2");
    const up = b.targets.filter((t) => t.healthy).length;
    h.textContent = "Backend " + b.name + " ";
    const badge = document.createElement("span");
    badge.className = "badge " + (up === b.targets.length ? "ok" : up === 0 ? "bad" : "");
    badge.textContent = up + "/" + b.targets.length + " up";
    h.appendChild(badge);
    const table = document.createElement("table");
    table.innerHTML = "<thead><tr><th>target</th><th class=text>health</th><th class=text>state</th><th>open</th><th>sessions</th><th>connect failures</th><th>weight</th><th>max</th><th class=text>backup</th></tr></thead>";
    const body = document.createElement("tbody");
    for (const t of b.targets) {
      const health = cell((t.healthy ? "up" : "down") + (t.ejectedUntil > 0 ? " (max_fails)" : t.slowStartUntil > 0 ? " (slow start)" : ""), "health", "text");
      const mark = document.createElement("span");
      mark.className = "badge " + (t.healthy ? "ok" : "bad");
      mark.textContent = health.textContent;
      health.textContent = "";
      health.appendChild(mark);
      body.appendChild(row({ backend: b.name, target: t.target }, [
        cell(t.target, "target"), health, cell(t.state ?? "ready", "state", "text"), cell(count(t.active), "active"), cell(count(t.sessions), "sessions"),
        cell(count(t.connectFailures), "connectFailures"), cell(String(Math.round(t.weight * 100) / 100), "weight"),
        cell(t.maxConnections > 0 ? count(t.maxConnections) : "-", "maxConnections"), cell(t.backup ? "yes" : "", "backup", "text"),
      ]));
    }
    table.appendChild(body);
    section.append(h);
    for (const [kind, line] of Object.entries(SOURCE_LINES)) {
      if (!b[kind]) continue;
      const p = document.createElement("p");
      p.dataset.source = kind;
      p.textContent = line.replace(/[{]([A-Za-z0-9_]+)[}]/g, (_, key) => String(b[kind][key] ?? "?"));
      section.append(p);
    }
    section.append(table);
    return section;
  });
  $("backends").replaceChildren(...sections);
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** Draws series (keys of history points) on a 600×160 SVG; the y axis starts at 0. */
function chart(id, series, format) {
  const el = $(id);
  const W = 600, H = 160, top = 12, bottom = 4;
  const now = history.length ? history[history.length - 1].t : Date.now();
  let max = 0;
  for (const p of history) for (const s of series) max = Math.max(max, p[s.key]);
  max = niceCeil(max);
  const x = (t) => W - ((now - t) / 1000 / WINDOW) * W;
  const y = (v) => H - bottom - (v / max) * (H - top - bottom);
  const nodes = [];
  for (const f of [0, 0.5, 1]) {
    nodes.push(svg("line", { class: "grid", x1: 0, x2: W, y1: y(max * f), y2: y(max * f) }));
    const label = svg("text", { x: 4, y: y(max * f) - 2 });
    label.textContent = format(max * f);
    nodes.push(label);
  }
  for (const s of series) {
    let d = "";
    for (const p of history) d += (d ? "L" : "M") + x(p.t).toFixed(1) + " " + y(p[s.key]).toFixed(1);
    if (d) nodes.push(svg("path", { d, stroke: s.color, "data-series": s.key }));
  }
  el.replaceChildren(...nodes);
}

function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/** Adds one point to the charts from two consecutive totals. */
function addPoint(t, totals) {
  if (previous && t > previous.t) {
    const dt = (t - previous.t) / 1000;
    history.push({
      t,
      active: totals.activeSessions,
      newPerSec: Math.max(0, (totals.totalSessions - previous.totals.totalSessions) / dt),
      upPerSec: Math.max(0, (totals.bytesUp - previous.totals.bytesUp) / dt),
      downPerSec: Math.max(0, (totals.bytesDown - previous.totals.bytesDown) / dt),
    });
    while (history.length && history[0].t < t - WINDOW * 1000) history.shift();
  }
  previous = { t, totals };
}

function render(s) {
  const t = Date.parse(s.time);
  const totals = s.totals;
  for (const sample of s.history || []) if (sample.t < t) addPoint(sample.t, sample);
  const state = $("state");
  state.textContent = s.ready ? "ready" : s.draining ? "draining" : "not ready";
  state.className = "badge " + (s.ready ? "ok" : "bad");
  $("version").textContent = s.version;
  $("uptime").textContent = duration(s.uptimeSeconds);
  $("updated").textContent = new Date(t).toLocaleTimeString();
  $("total-active").textContent = count(totals.activeSessions);
  $("total-sessions").textContent = count(totals.totalSessions);
  $("total-up").textContent = bytes(totals.bytesUp);
  $("total-down").textContent = bytes(totals.bytesDown);
  $("total-failures").textContent = count(totals.connectFailures);
  $("total-refused").textContent = count(totals.refused);
  renderListeners(s, t);
  renderBackends(s);
  addPoint(t, totals);
  const css = getComputedStyle(document.documentElement);
  const up = css.getPropertyValue("--up").trim(), down = css.getPropertyValue("--down").trim();
  chart("chart-sessions", [{ key: "active", color: up }, { key: "newPerSec", color: down }], (v) => count(Math.round(v * 10) / 10));
  chart("chart-bytes", [{ key: "upPerSec", color: up }, { key: "downPerSec", color: down }], (v) => bytes(v) + "/s");
}

let first = true;
async function poll() {
  try {
    const response = await fetch(first ? "status?history" : "status", { cache: "no-store" });
    first = false;
    if (!response.ok) throw new Error("status " + response.status);
    render(await response.json());
    $("error").textContent = "";
  } catch (error) {
    $("error").textContent = "cannot reach tcprouter (" + error.message + "), retrying";
    const state = $("state");
    state.textContent = "unreachable";
    state.className = "badge bad";
  } finally {
    setTimeout(poll, 1000);
  }
}
poll();
</script>
</body>
</html>
`;
