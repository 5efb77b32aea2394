// f5-llm-ratio live page: fetches history.json and status, draws one card of small SVG charts per member,
// and a banner for what is wrong (pools not read, blind, paused or failing; members without metrics).
"use strict";
const COLORS = {ratio: "#0969da", connection_limit: "#8250df", share: "#1a7f37", waiting: "#cf222e",
  running: "#9a6700", kv: "#0550ae", speed: "#57606a", ttft: "#953800"};
const CHARTS = [  // [title, fields, fixed maximum or null, smallest maximum, axis label of a value (with its unit)]
  ["ratio", ["ratio", "connection_limit"], null, 1, v => v.toFixed(0)],
  ["share", ["share"], null, 0.05, v => pct(v)],
  ["load", ["waiting", "running"], null, 1, v => v.toFixed(0) + " req"],
  ["KV", ["kv"], 1, 1, v => pct(v)],
  ["speed", ["speed"], 1, 1, v => v.toFixed(1) + "×"],  // relative to the pool's fastest member
  ["TTFT s", ["ttft"], null, 0.01, v => v.toPrecision(2) + " s"],
];
const W = 300, H = 70, LEFT = 44, TOP = 4, BOTTOM = 14;
let refreshes = 0, timer = null;

function pct(v) { return v == null ? "-" : (100 * v).toFixed(0) + "%"; }
function fmt(v, d = 1) { return v == null ? "-" : (Math.round(v * 10 ** d) / 10 ** d).toString(); }
function esc(s) { return String(s ?? "").replace(/[&<>"']/g, c => "&#" + c.charCodeAt(0) + ";"); }
function last(values) { for (let i = values.length - 1; i >= 0; i--) if (values[i] != null) return values[i]; return null; }
function span(s) { return s < 120 ? Math.round(s) + " s" : s < 7200 ? Math.round(s / 60) + " min" : (s / 3600).toFixed(1) + " h"; }
function clock(epoch) { return new Date(epoch * 1000).toISOString().slice(11, 19) + " UTC"; }  // the API speaks UTC too
function hm(epoch) { return new Date(epoch * 1000).toISOString().slice(11, 19); }

function path(t, values, x, y) {
  let d = "", pen = false;
  for (let i = 0; i < t.length; i++) {
    if (values[i] == null) { pen = false; continue; }
    d += (pen ? "L" : "M") + x(t[i]).toFixed(1) + " " + y(values[i]).toFixed(1);
    pen = true;
  }
  return d;
}

// One y-scale per chart row across a pool's members: the largest value of those fields in the pool.
function scales(members) {
  const out = {};
  for (const [title, fields, fixedMax, floor] of CHARTS) {
    if (fixedMax != null) { out[title] = fixedMax; continue; }
    let max = floor;
    for (const cols of Object.values(members))
      for (const f of fields) for (const v of cols[f] || []) if (v != null && v > max) max = v;
    out[title] = 1.1 * max;
  }
  return out;
}

function chart(title, fields, max, axis, t, cols, t0, t1, changes) {
  const present = fields.filter(f => cols[f] && cols[f].some(v => v != null));
  if (!present.length) return "";
  const x = tt => LEFT + (W - LEFT - 2) * (t1 > t0 ? (tt - t0) / (t1 - t0) : 1);
  const y = v => TOP + (H - TOP - BOTTOM) * (1 - Math.min(1, Math.max(0, v / max)));
  let svg = `<svg class="chart" data-chart="${title}" data-max="${max}" viewBox="0 0 ${W} ${H}" role="img" ` +
    `aria-label="${title}"><rect class="frame" x="${LEFT}" y="${TOP}" width="${W - LEFT - 2}" height="${H - TOP - BOTTOM}"/>`;
  svg += `<text class="axis" x="${LEFT - 3}" y="${TOP + 7}" text-anchor="end">${esc(axis(max))}</text>` +
    `<text class="axis" x="${LEFT - 3}" y="${H - BOTTOM}" text-anchor="end">${esc(axis(0))}</text>` +
    `<text class="title" x="2" y="${(H - BOTTOM) / 2 + 4}">${title}</text>`;
  for (const c of changes) svg += `<line class="change" x1="${x(c).toFixed(1)}" x2="${x(c).toFixed(1)}" y1="${TOP}" y2="${H - BOTTOM}"/>`;
  for (const f of present) {
    const d = path(t, cols[f], x, y);
    const dots = cols[f].filter(v => v != null).length;
    svg += `<path data-field="${f}" d="${d}" stroke="${COLORS[f]}"/>`;
    if (dots === 1) { const i = cols[f].findIndex(v => v != null); svg += `<circle cx="${x(t[i])}" cy="${y(cols[f][i])}" r="2" fill="${COLORS[f]}"/>`; }
  }
  svg += `<text class="axis" x="${LEFT}" y="${H - 2}">${hm(t0)}</text>` +
    `<text class="axis" x="${W - 2}" y="${H - 2}" text-anchor="end">${hm(t1)} UTC</text></svg>`;
  return svg;
}

function groups(p) {  // priority-group activation: which groups LTM uses now (idle ones get no traffic)
  if (!p.priority_groups || !p.priority_groups.length) return "";
  return `<p class="groups">priority groups: ` + p.priority_groups.map(g =>
    `<span class="${g.in_use ? "" : "idle"}">${g.group} ${g.in_use ? "in use" : "idle"} (${g.available}/${g.members})</span>`).join(" · ") + `</p>`;
}

function card(pool, key, cols, t, t0, t1, changes, max, info, group) {
  const mine = changes.filter(c => c.pool === pool && c.member === key);
  const latest = mine.length ? mine[mine.length - 1] : null;
  const ratio = last(cols.ratio), limit = last(cols.connection_limit), share = last(cols.share);
  const charts = CHARTS.map(([title, fields, , , axis]) =>
    chart(title, fields, max[title], axis, t, cols, t0, t1, mine.map(c => c.at_epoch))).join("");
  const speed = last(cols.speed), ttft = last(cols.ttft);
  const name = info && info.display ? info.display : key;
  const badge = info && info.held ? `<span class="badge held">${esc(info.action)}</span>` : "";
  const why = info && info.reason ? String(info.reason).replace(info.scrape_error + ": ", "") : "";
  const unknown = info && info.scrape_error ? `<div class="unknown">no metrics: <b>${esc(info.scrape_error)}</b>` +
    (why && why !== info.scrape_error ? ` (${esc(why)})` : "") + `</div>` : "";
  return `<div class="member${share ? "" : " inactive"}${unknown ? " failing" : ""}" data-pool="${esc(pool)}" data-member="${esc(key)}" data-ratio="${ratio ?? ""}">` +
    `<h3><span title="${esc(key)}">${esc(name)}${badge}${group != null ? ` <small class="k-group">group ${esc(group)}</small>` : ""}</span><span>ratio <b class="k-ratio">${ratio ?? "-"}</b>${limit ? ` · limit <b class="k-limit">${limit}</b>` : ""}</span></h3>` +
    unknown +
    `<div class="now">share <b class="k-share">${pct(share)}</b> · waiting <b class="k-waiting">${fmt(last(cols.waiting))}</b>` +
    ` · running <b class="k-running">${fmt(last(cols.running))}</b> · KV <b class="k-kv">${pct(last(cols.kv))}</b>` +
    (speed != null ? ` · speed <b class="k-speed">${fmt(speed, 2)}× fastest</b>` : "") + (ttft != null ? ` · TTFT <b class="k-ttft">${fmt(ttft, 3)} s</b>` : "") + `</div>` +
    charts + `<div class="why" title="${esc(latest ? latest.reason : (info ? info.reason : ""))}">` +
    (latest ? `${clock(latest.at_epoch)}: ${latest.ratio_from} → ${latest.ratio_to}: ${esc(latest.reason)}` : "no ratio change in the window") + `</div></div>`;
}

// What is wrong, from /status: pools not read, blind, paused or failing, and members without metrics.
const SEVERITY = {error: 0, paused: 1, warn: 2, info: 3};
function strip(text, prefix) { text = String(text || ""); return text.startsWith(prefix + ": ") ? text.slice(prefix.length + 2) : text; }
function problems(status) {
  const out = [];
  for (const p of (status && status.pools) || []) {
    const where = esc(p.full_path);
    if (p.error) out.push(["error", `pool ${where} could not be read: ${esc(strip(p.error, p.full_path))}`]);
    else if (p.paused) out.push(["paused", `pool ${where} is paused by an admin (its BIG-IP description says "f5-llm-ratio: pause"): nothing is written`]);
    else if (p.result === "blind") out.push(["error", `pool ${where} is blind: no active member's /metrics could be used; nothing written`]);
    else if (p.result === "error") out.push(["error", `pool ${where}: ${esc(strip(p.problem || "failed", p.full_path))}`]);
    if (!p.error) {
      const failing = (p.members || []).filter(m => m.scrape_error);
      if (failing.length && p.result !== "blind") out.push(["warn", `pool ${where}: ${failing.length} member(s) without metrics: ` +
        failing.slice(0, 5).map(m => `${esc(m.display || m.name)} (${esc(m.scrape_error)})`).join(", ")]);
      if ((p.held_members || []).length) out.push(["info", `pool ${where}: held by an admin: ${p.held_members.map(esc).join(", ")}`]);
    }
  }
  return out.sort((a, b) => SEVERITY[a[0]] - SEVERITY[b[0]]);
}

function render(doc, status) {
  const infos = {};
  for (const p of (status && status.pools) || []) for (const m of p.members || []) infos[p.full_path + "|" + m.name] = m;
  const pools = document.getElementById("pools");
  let html = "", shown = 0;
  for (const p of doc.pools) {
    const t = p.t, t1 = Math.max(doc.now, t.length ? t[t.length - 1] : doc.now), t0 = t.length > 1 ? t[0] : t1 - 60;
    shown = Math.max(shown, t1 - t0);
    const max = scales(p.members);
    const mg = p.member_groups || {};
    html += `<section class="pool" data-pool="${esc(p.pool)}"><h2>${esc(p.pool)}</h2>${groups(p)}<div class="grid">` +
      Object.entries(p.members).map(([key, cols]) => card(p.pool, key, cols, t, t0, t1, doc.changes, max, infos[p.pool + "|" + key], mg[key])).join("") +
      `</div></section>`;
  }
  pools.innerHTML = html || "<p>No pool read yet.</p>";
  const alerts = problems(status);
  const banner = document.getElementById("alerts");
  banner.innerHTML = alerts.map(([kind, text]) => `<li class="${kind}">${text}</li>`).join("");
  banner.hidden = !alerts.length;
  const rows = doc.changes.slice(-100).reverse().map(c => `<tr><td>${clock(c.at_epoch)}</td><td>${esc(c.pool)}</td><td>${esc(c.member)}</td>` +
    `<td class="num">${c.ratio_from} → ${c.ratio_to}</td><td class="num">${c.limit_from === c.limit_to ? c.limit_to : c.limit_from + " → " + c.limit_to}</td>` +
    `<td class="num">${fmt(c.score, 3)}</td><td class="num">${fmt(c.waiting)}</td><td class="num">${fmt(c.running)}</td><td class="num">${pct(c.kv)}</td>` +
    `<td>${esc(c.reason)}${c.dry_run ? '<span class="badge">dry run</span>' : ""}</td></tr>`).join("");
  document.querySelector("#changes tbody").innerHTML = rows;
  document.getElementById("window").textContent = `the last ${span(shown || 0)}` +
    (doc.window_seconds ? ` (up to ${span(doc.window_seconds)} is kept)` : "");
  document.getElementById("meta").textContent = `updated ${clock(doc.now)} · tick ${doc.tick_seconds} s` + (doc.dry_run ? " · dry run" : "");
  document.body.dataset.refreshes = String(++refreshes);
}

async function getJson(url) {
  const r = await fetch(url, {cache: "no-store"});
  if (!r.ok) throw new Error(url + ": HTTP " + r.status);
  return r.json();
}

async function refresh() {
  let every = 2000;
  try {
    const pool = new URLSearchParams(location.search).get("pool");  // /?pool=/Common/p: one pool only
    const [doc, status] = await Promise.all([getJson("history.json" + (pool ? "?pool=" + encodeURIComponent(pool) : "")),
      getJson("status")]);
    if (pool) status.pools = status.pools.filter(p => p.full_path === pool);
    every = Math.min(10000, Math.max(1000, 1000 * (doc.tick_seconds || 2)));
    render(doc, status);
    document.getElementById("problem").hidden = true;
  } catch (e) {
    const p = document.getElementById("problem");
    p.textContent = "Cannot read the controller's data (" + e.message + "); retrying.";
    p.hidden = false;
  }
  timer = setTimeout(refresh, every);
}
refresh();
