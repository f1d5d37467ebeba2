// The usage view for the key in use: its limits (GET /v1/key, OpenRouter's shape) and its
// usage by day and model (GET /v1/usage). A server without accounts answers 404 to both,
// which is shown as such. The chart is inline SVG.

import { ApiError, getJson } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function svg(name, attributes = {}, text = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

export function money(value) {
  if (value === null || value === undefined) return "—";
  const digits = Math.abs(value) < 0.01 && value !== 0 ? 6 : 2;
  return "$" + Number(value).toFixed(digits);
}

// Spend per day, summed over models (and keys), in date order; days without usage in between
// count as zero, so the chart's spacing is time.
export function spendByDay(rows) {
  const days = new Map();
  for (const row of rows) days.set(row.date, (days.get(row.date) || 0) + (row.cost || 0));
  const dates = [...days.keys()].sort();
  if (!dates.length) return [];
  const result = [];
  const last = Date.parse(dates[dates.length - 1] + "T00:00:00Z");
  for (let t = Date.parse(dates[0] + "T00:00:00Z"); t <= last && result.length < 1000; t += 86400000) {
    const day = new Date(t).toISOString().slice(0, 10);
    result.push([day, days.get(day) || 0]);
  }
  return result;
}

export function byModel(rows) {
  const models = new Map();
  for (const row of rows) {
    const total = models.get(row.model) || {
      model: row.model, requests: 0, prompt_tokens: 0, completion_tokens: 0, cached_tokens: 0, cost: 0,
    };
    for (const field of ["requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cost"]) {
      total[field] += row[field] || 0;
    }
    models.set(row.model, total);
  }
  return [...models.values()].sort((a, b) => b.cost - a.cost || b.requests - a.requests);
}

// A bar chart of [date, cost] pairs as an SVG element (each bar titled with its values).
export function spendChart(days) {
  const width = 640;
  const height = 220;
  const pad = { left: 56, right: 8, top: 10, bottom: 28 };
  const max = Math.max(...days.map(([, cost]) => cost), 0) || 1;
  const total = days.reduce((sum, [, cost]) => sum + cost, 0);
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `Spend over ${days.length} days, ${money(total)} in all`,
  });
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  chart.append(svg("line", { x1: pad.left, y1: pad.top + plotH, x2: width - pad.right, y2: pad.top + plotH, stroke: "#8b949e" }));
  chart.append(svg("text", { x: pad.left - 6, y: pad.top + 10, "text-anchor": "end" }, money(max)));
  chart.append(svg("text", { x: pad.left - 6, y: pad.top + plotH, "text-anchor": "end" }, "$0"));
  const step = plotW / Math.max(days.length, 1);
  const barW = Math.max(Math.min(step * 0.8, 48), 1);
  days.forEach(([date, cost], i) => {
    const h = (cost / max) * plotH;
    const bar = svg("rect", {
      class: "bar-rect",
      x: (pad.left + i * step + (step - barW) / 2).toFixed(1),
      y: (pad.top + plotH - h).toFixed(1),
      width: barW.toFixed(1),
      height: h.toFixed(1),
      "data-date": date,
      "data-cost": cost,
    });
    bar.append(svg("title", {}, `${date}: ${money(cost)}`));
    chart.append(bar);
  });
  if (days.length) {
    const label = (i, anchor) =>
      svg("text", { x: pad.left + i * step + step / 2, y: height - 8, "text-anchor": anchor }, days[i][0]);
    chart.append(label(0, days.length === 1 ? "middle" : "start"));
    if (days.length > 1) chart.append(label(days.length - 1, "end"));
  }
  return chart;
}

// Fills the chart and the table from /v1/usage rows (exported so it can be checked alone).
export function renderUsage(rows) {
  const box = $("usage-chart-box");
  const table = $("usage-table");
  const chartHolder = $("usage-chart");
  chartHolder.replaceChildren();
  const body = table.querySelector("tbody");
  body.replaceChildren();
  $("usage-key-filter-label").hidden = !rows.some((row) => "key" in row);
  if (!rows.length) {
    box.hidden = true;
    table.hidden = true;
    $("usage-state").replaceChildren(notice("No usage in this period."));
    return;
  }
  $("usage-state").replaceChildren();
  chartHolder.append(spendChart(spendByDay(rows)));
  for (const total of byModel(rows)) {
    const tr = document.createElement("tr");
    const cells = [
      total.model,
      total.requests.toLocaleString("en"),
      total.prompt_tokens.toLocaleString("en"),
      total.completion_tokens.toLocaleString("en"),
      total.cached_tokens.toLocaleString("en"),
      money(total.cost),
    ];
    for (const [i, value] of cells.entries()) {
      const cell = document.createElement(i === 0 ? "th" : "td");
      if (i === 0) cell.scope = "row";
      cell.textContent = value;
      tr.append(cell);
    }
    body.append(tr);
  }
  box.hidden = false;
  table.hidden = false;
}

function notice(text) {
  const p = document.createElement("p");
  p.className = "notice";
  p.textContent = text;
  return p;
}

export function renderKey(data) {
  const list = $("usage-key-list");
  list.replaceChildren();
  const rate = data.rate_limit;
  const items = [
    ["Key", data.label],
    ["Spent", money(data.usage)],
    ["Limit", data.limit === null || data.limit === undefined ? "none" : money(data.limit)],
    ["Remaining", data.limit_remaining === null || data.limit_remaining === undefined ? "—" : money(data.limit_remaining)],
    ["Limit resets", data.limit_reset || "never"],
    ["Rate limit", rateLimit(rate)],
  ];
  for (const [name, value] of items) {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = value ?? "—";
    list.append(dt, dd);
  }
  $("usage-key").hidden = false;
}

// OpenRouter's {requests, interval}, plus the tokens and parallel requests pampero adds; a null
// part has no limit.
function rateLimit(rate) {
  if (!rate) return "none";
  const parts = [];
  if (rate.requests != null) parts.push(`${rate.requests} requests`);
  if (rate.tokens != null) parts.push(`${rate.tokens} tokens`);
  let text = parts.length ? `${parts.join(", ")} per ${rate.interval}` : "";
  if (rate.parallel != null) text += `${text ? ", " : ""}${rate.parallel} at a time`;
  return text || "none";
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

// Loads both endpoints; `onUnauthorized` is called on a 401 (the page asks for a key).
export async function loadUsage(onUnauthorized) {
  const state = $("usage-state");
  if (!$("usage-start").value) {
    const now = new Date();
    $("usage-end").value = isoDay(now);
    $("usage-start").value = isoDay(new Date(now.getTime() - 29 * 86400000));
  }
  state.replaceChildren(notice("Loading…"));
  try {
    const key = await getJson("/v1/key");
    renderKey(key.data || {});
    const query = new URLSearchParams({ start: $("usage-start").value, end: $("usage-end").value });
    const filter = $("usage-key-filter").value.trim();
    if (filter) query.set("key", filter);
    const usage = await getJson("/v1/usage?" + query);
    renderUsage(usage.data || []);
  } catch (error) {
    $("usage-key").hidden = true;
    $("usage-chart-box").hidden = true;
    $("usage-table").hidden = true;
    if (error instanceof ApiError && error.status === 404) {
      const p = notice(
        "Accounts are not enabled on this server: it keeps no keys or usage (GET /v1/key answered 404).",
      );
      p.id = "usage-disabled";
      state.replaceChildren(p);
    } else if (error instanceof ApiError && error.status === 401) {
      state.replaceChildren(notice("This server needs an API key to show usage."));
      onUnauthorized();
    } else {
      state.replaceChildren(notice(error.message));
    }
  }
}
