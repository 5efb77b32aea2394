// f5-llm-ratio live page: fetches history.json and draws one card of small SVG charts per member.
"use strict";
const COLORS = {ratio: "#0969da", connection_limit: "#8250df", share: "#1a7f37", waiting: "#cf222e",
  running: "#9a6700", kv: "#0550ae", speed: "#57606a", ttft: "#953800"};
const CHARTS = [  // [title, fields, fixed maximum or null, smallest maximum, format of the axis maximum]
  ["ratio", ["ratio", "connection_limit"], null, 1, v => v.toFixed(0)],
  ["share", ["share"], null, 0.05, v => pct(v)],
  ["load", ["waiting", "running"], null, 1, v => v.toFixed(0)],
  ["KV", ["kv"], 1, 1, v => pct(v)],
  ["speed", ["speed"], null, 0.1, v => v.toPrecision(2)],
  ["TTFT s", ["ttft"], null, 0.01, v => v.toPrecision(2)],
];
const W = 300, H = 58, PAD = 2;
let refreshes = 0, timer = null;

function pct(v) { return v == null ? "-" : (100 * v).toFixed(0) + "%"; }
function fmt(v, d = 1) { return v == null ? "-" : (Math.round(v * 10 ** d) / 10 ** d).toString(); }
function esc(s) { return String(s ?? "").replace(/[&<>"']/g, c => "&#" + c.charCodeAt(0) + ";"); }
function last(values) { for (let i = values.length - 1; i >= 0; i--) if (values[i] != null) return values[i]; return null; }
function span(s) { return s < 120 ? Math.round(s) + " s" : Math.round(s / 60) + " min"; }
function clock(epoch) { return new Date(epoch * 1000).toLocaleTimeString(); }

function path(t, values, x, y) {
  let d = "", pen = false;
  for (let i = 0; i < t.length; i++) {
    if (values[i] == null) { pen = false; continue; }
    d += (pen ? "L" : "M") + x(t[i]).toFixed(1) + " " + y(values[i]).toFixed(1);
    pen = true;
  }
  return d;
}

function chart(title, fields, fixedMax, floor, axis, t, cols, t0, t1, changes) {
  const present = fields.filter(f => cols[f] && cols[f].some(v => v != null));
  if (!present.length) return "";
  let max = fixedMax;
  if (max == null) max = 1.1 * Math.max(floor, ...present.flatMap(f => cols[f].filter(v => v != null)));
  const x = tt => PAD + (W - 2 * PAD) * (t1 > t0 ? (tt - t0) / (t1 - t0) : 1);
  const y = v => H - 12 - (H - 16) * Math.min(1, v / max);
  let svg = `<svg class="chart" data-chart="${title}" viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" role="img" ` +
    `aria-label="${title}"><rect class="frame" x="0" y="0" width="${W}" height="${H - 10}"/>`;
  for (const c of changes) svg += `<line class="change" x1="${x(c).toFixed(1)}" x2="${x(c).toFixed(1)}" y1="0" y2="${H - 10}"/>`;
  for (const f of present) {
    const d = path(t, cols[f], x, y);
    const dots = cols[f].filter(v => v != null).length;
    svg += `<path data-field="${f}" d="${d}" stroke="${COLORS[f]}"/>`;
    if (dots === 1) { const i = cols[f].findIndex(v => v != null); svg += `<circle cx="${x(t[i])}" cy="${y(cols[f][i])}" r="2" fill="${COLORS[f]}"/>`; }
  }
  svg += `<text x="2" y="${H - 1}">${title} (max ${axis(max)})</text>` +
    `<text x="${W - 2}" y="${H - 1}" text-anchor="end">last ${span(t1 - t0)}</text></svg>`;
  return svg;
}

function groups(p) {  // priority-group activation: which groups LTM uses now (idle ones get no traffic)
  if (!p.priority_groups || !p.priority_groups.length) return "";
  return `<p class="groups">priority groups: ` + p.priority_groups.map(g =>
    `<span class="${g.in_use ? "" : "idle"}">${g.group} ${g.in_use ? "in use" : "idle"} (${g.available}/${g.members})</span>`).join(" · ") + `</p>`;
}

function card(pool, key, cols, t, t0, t1, changes, group) {
  const mine = changes.filter(c => c.pool === pool && c.member === key);
  const latest = mine.length ? mine[mine.length - 1] : null;
  const ratio = last(cols.ratio), limit = last(cols.connection_limit), share = last(cols.share);
  const charts = CHARTS.map(([title, fields, mx, floor, axis]) =>
    chart(title, fields, mx, floor, axis, t, cols, t0, t1, mine.map(c => c.at_epoch))).join("");
  const speed = last(cols.speed), ttft = last(cols.ttft);
  return `<div class="member${share ? "" : " inactive"}" data-pool="${esc(pool)}" data-member="${esc(key)}" data-ratio="${ratio ?? ""}">` +
    `<h3><span>${esc(key)}${group != null ? ` <small class="k-group">group ${esc(group)}</small>` : ""}</span><span>ratio <b class="k-ratio">${ratio ?? "-"}</b>${limit ? ` · limit <b class="k-limit">${limit}</b>` : ""}</span></h3>` +
    `<div class="now">share <b class="k-share">${pct(share)}</b> · waiting <b class="k-waiting">${fmt(last(cols.waiting))}</b>` +
    ` · running <b class="k-running">${fmt(last(cols.running))}</b> · KV <b class="k-kv">${pct(last(cols.kv))}</b>` +
    (speed != null ? ` · speed <b class="k-speed">${fmt(speed, 2)}</b>` : "") + (ttft != null ? ` · TTFT <b class="k-ttft">${fmt(ttft, 3)}s</b>` : "") + `</div>` +
    charts + `<div class="why" title="${esc(latest ? latest.reason : "")}">` +
    (latest ? `${clock(latest.at_epoch)}: ${latest.ratio_from} → ${latest.ratio_to}: ${esc(latest.reason)}` : "no ratio change in the window") + `</div></div>`;
}

function render(doc) {
  const pools = document.getElementById("pools");
  let html = "";
  for (const p of doc.pools) {
    const t = p.t, t1 = Math.max(doc.now, t.length ? t[t.length - 1] : doc.now), t0 = t.length > 1 ? t[0] : t1 - 60;
    const mg = p.member_groups || {};
    html += `<section class="pool" data-pool="${esc(p.pool)}"><h2>${esc(p.pool)}</h2>${groups(p)}<div class="grid">` +
      Object.entries(p.members).map(([key, cols]) => card(p.pool, key, cols, t, t0, t1, doc.changes, mg[key])).join("") + `</div></section>`;
  }
  pools.innerHTML = html || "<p>No pool read yet.</p>";
  const rows = doc.changes.slice(-100).reverse().map(c => `<tr><td>${clock(c.at_epoch)}</td><td>${esc(c.pool)}</td><td>${esc(c.member)}</td>` +
    `<td class="num">${c.ratio_from} → ${c.ratio_to}</td><td class="num">${c.limit_from === c.limit_to ? c.limit_to : c.limit_from + " → " + c.limit_to}</td>` +
    `<td class="num">${fmt(c.score, 3)}</td><td class="num">${fmt(c.waiting)}</td><td class="num">${fmt(c.running)}</td><td class="num">${pct(c.kv)}</td>` +
    `<td>${esc(c.reason)}${c.dry_run ? '<span class="badge">dry run</span>' : ""}</td></tr>`).join("");
  document.querySelector("#changes tbody").innerHTML = rows;
  document.getElementById("meta").textContent = `updated ${clock(doc.now)} · tick ${doc.tick_seconds}s` + (doc.dry_run ? " · dry run" : "");
  document.body.dataset.refreshes = String(++refreshes);
}

async function refresh() {
  let every = 2000;
  try {
    const pool = new URLSearchParams(location.search).get("pool");  // /?pool=/Common/p: one pool only
    const r = await fetch("history.json" + (pool ? "?pool=" + encodeURIComponent(pool) : ""), {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    const doc = await r.json();
    every = Math.min(10000, Math.max(1000, 1000 * (doc.tick_seconds || 2)));
    render(doc);
    document.getElementById("problem").hidden = true;
  } catch (e) {
    const p = document.getElementById("problem");
    p.textContent = "Cannot read history.json from the controller (" + e.message + "); retrying.";
    p.hidden = false;
  }
  timer = setTimeout(refresh, every);
}
refresh();
