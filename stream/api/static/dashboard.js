// Driftline dashboard: two EventSources (metrics samples, alert revisions), one card per
// pipeline with uPlot charts. No build step; the only library is the vendored uPlot.
"use strict";

const MAX_POINTS = 2000;
const pipelines = new Map();   // name -> per-pipeline view state
const alerts = new Map();      // "pipeline/id" -> latest revision
let samples = 0;

const fmt = {
  int: (v) => (v == null ? "–" : Math.round(v).toLocaleString("en")),
  pct: (v) => (v == null ? "–" : (100 * v).toFixed(1) + "%"),
  num: (v, d = 3) => (v == null ? "–" : Number(v).toFixed(d)),
  secs: (v) => (v == null ? "–" : v < 90 ? v.toFixed(1) + " s" : (v / 60).toFixed(1) + " min"),
};

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

function chartSize(node) {
  return { width: Math.max(260, node.clientWidth - 4), height: 220 };
}

// vertical lines where drift alerts fired, labelled "#id ×count"
function drawMarkers(u, view) {
  const ctx = u.ctx;
  const [lo, hi] = [u.scales.x.min, u.scales.x.max];
  view.drawn = [];
  ctx.save();
  for (const a of view.markers.values()) {
    for (const x of a.xs) {
      if (x < lo || x > hi) continue;
      const px = Math.round(u.valToPos(x, "x", true));
      ctx.strokeStyle = a.state === "resolved" ? "#2e9b57" : a.state === "warning" ? "#e69a18" : "#d1343b";
      ctx.lineWidth = 2 * devicePixelRatio;
      ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
      ctx.beginPath();
      ctx.moveTo(px, u.bbox.top);
      ctx.lineTo(px, u.bbox.top + u.bbox.height);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = ctx.strokeStyle;
      ctx.font = `${11 * devicePixelRatio}px system-ui`;
      ctx.fillText(`#${a.id}${a.count > 1 ? " ×" + a.count : ""} ${a.severity}`, px + 4, u.bbox.top + 12 * devicePixelRatio);
      view.drawn.push({ id: a.id, x, px: px / devicePixelRatio });
    }
  }
  ctx.restore();
  view.node.dataset.markers = String(view.drawn.length);
}

function newView(name) {
  document.getElementById("empty")?.remove();
  const node = el("section", { class: "pipeline", id: `pipeline-${name}`, "data-points": "0", "data-markers": "0" });
  const title = el("h2");
  title.append(name + " ", el("span", { class: "learner" }));
  node.append(title);
  const stats = el("div", { class: "stats" });
  const fields = {};
  for (const [key, label] of [
    ["accuracy", "rolling accuracy"], ["rate", "events/s"], ["events", "events"], ["lag", "lag"],
    ["dead", "dead letters"], ["ckpt", "checkpoint age"], ["version", "version"], ["churn", "churn"], ["alerts", "open alerts"],
  ]) {
    const s = el("div", { class: "stat", "data-stat": key });
    const b = el("b", {}, "–");
    s.append(b, el("small", {}, label));
    stats.append(s);
    fields[key] = b;
  }
  node.append(stats);
  const charts = el("div", { class: "charts" });
  const accBox = el("div", { class: "chart accuracy" });
  const rateBox = el("div", { class: "chart rate" });
  accBox.append(el("h3", {}, "rolling accuracy by events seen; dashed lines: drift alerts"));
  rateBox.append(el("h3", {}, "events/s and churn by time"));
  charts.append(accBox, rateBox);
  node.append(charts);
  document.getElementById("pipelines").append(node);

  const view = { name, node, fields, xs: [], acc: [], ts: [], rate: [], churn: [], markers: new Map(), drawn: [],
                 last: null, router: null, routerBox: null, charts };
  view.acc_chart = new uPlot({
    ...chartSize(accBox),
    scales: { x: { time: false }, y: { range: [0, 1] } },
    axes: [{ label: "events seen" }, { label: "accuracy" }],
    series: [{ label: "events" }, { label: "rolling accuracy", stroke: "#2f6fd6", width: 2 }],
    legend: { show: false },
    hooks: { draw: [(u) => drawMarkers(u, view)] },
  }, [[], []], accBox);
  view.rate_chart = new uPlot({
    ...chartSize(rateBox),
    scales: { churn: { range: [0, 1] } },
    axes: [{}, { label: "events/s" }, { scale: "churn", side: 1, label: "churn", grid: { show: false } }],
    series: [{}, { label: "events/s", stroke: "#7a4fd6", width: 2 }, { label: "churn", scale: "churn", stroke: "#d68a2f" }],
    legend: { show: false },
  }, [[], [], []], rateBox);
  pipelines.set(name, view);
  return view;
}

// DriftMoE: the share of recent inputs the router sends to each expert, over events seen
function drawRouter(view, x, shares) {
  const experts = Object.keys(shares).map(Number).sort((a, b) => a - b);
  if (!experts.length) return;
  if (!view.router) {
    view.router = { xs: [], experts: new Map() };
    view.routerBox = el("div", { class: "chart router" });
    view.routerBox.append(el("h3", {}, "router: share of recent inputs per expert"));
    view.charts.append(view.routerBox);
  }
  const r = view.router;
  let grew = false;
  for (const e of experts) if (!r.experts.has(e)) { r.experts.set(e, r.xs.map(() => 0)); grew = true; }
  r.xs.push(x);
  for (const [e, ys] of r.experts) ys.push(shares[e] ?? 0);
  const keys = [...r.experts.keys()].sort((a, b) => a - b);
  const data = [r.xs, ...keys.map((k) => r.experts.get(k))];
  if (grew || !view.router_chart) {
    view.router_chart?.destroy();
    const palette = ["#2f6fd6", "#d1343b", "#2e9b57", "#e69a18", "#7a4fd6", "#16a2b8", "#8c6d31", "#d63384", "#555"];
    view.router_chart = new uPlot({
      ...chartSize(view.routerBox), height: 160,
      scales: { x: { time: false }, y: { range: [0, 1] } },
      axes: [{ label: "events seen" }, { label: "share" }],
      series: [{}, ...keys.map((k, i) => ({ label: `expert ${k}`, stroke: palette[i % palette.length], width: 1.5 }))],
    }, data, view.routerBox);
  } else {
    view.router_chart.setData(data);
  }
}

function trim(arrays) {
  if (arrays[0].length > MAX_POINTS) for (const a of arrays) a.splice(0, a.length - MAX_POINTS);
}

function onSample(sample) {
  samples += 1;
  document.body.dataset.samples = String(samples);
  const status = sample.status || {};
  for (const m of sample.models) {
    const view = pipelines.get(m.name) || newView(m.name);
    view.node.querySelector(".learner").textContent = m.learner;
    const mine = status.pipeline === undefined || status.pipeline === m.name;
    const events = mine && status.events != null ? status.events : m.events_seen;
    if (view.last) {
      const dt = sample.ts - view.last.ts;
      if (dt > 0) {
        view.ts.push(sample.ts);
        view.rate.push(Math.max(0, (events - view.last.events) / dt));
        view.churn.push(m.metrics.churn ?? null);
        trim([view.ts, view.rate, view.churn]);
        view.rate_chart.setData([view.ts, view.rate, view.churn]);
        view.fields.rate.textContent = fmt.int(view.rate[view.rate.length - 1]);
      }
    }
    view.last = { ts: sample.ts, events };
    const acc = m.metrics.rolling_accuracy;
    if (acc != null && m.metrics.labelled > 0 && view.xs[view.xs.length - 1] !== m.events_seen) {
      view.xs.push(m.events_seen);
      view.acc.push(acc);
      trim([view.xs, view.acc]);
      view.acc_chart.setData([view.xs, view.acc]);
      view.node.dataset.points = String(view.xs.length);
    }
    if (m.router && Object.keys(m.router).length) drawRouter(view, m.events_seen, m.router);
    const lag = status.lag != null && typeof status.lag === "object" ? status.lag[m.name] : null;
    view.fields.accuracy.textContent = fmt.pct(acc);
    view.fields.events.textContent = fmt.int(events);
    view.fields.lag.textContent = fmt.int(lag);
    view.fields.dead.textContent = mine ? fmt.int(status.dead_letters) : "–";
    view.fields.ckpt.textContent = mine ? fmt.secs(status.checkpoint_age_s) : "–";
    view.fields.version.textContent = "v" + m.version;
    view.fields.churn.textContent = fmt.pct(m.metrics.churn);
    view.fields.alerts.textContent = String([...alerts.values()].filter((a) => a.pipeline === m.name && a.state !== "resolved").length);
  }
}

function onAlert(a) {
  const key = `${a.pipeline}/${a.id}`;
  const prev = alerts.get(key);
  if (prev && prev.revision > a.revision) return;
  alerts.set(key, a);
  const view = pipelines.get(a.pipeline) || newView(a.pipeline);
  if (a.kind === "drift") {
    const firings = (prev?.xs || []).slice();
    for (const x of [a.event_index, a.last_event_index]) if (x >= 0 && !firings.includes(x)) firings.push(x);
    view.markers.set(a.id, { id: a.id, xs: a.state === "warning" ? [a.event_index] : firings, state: a.state, count: a.count, severity: a.severity });
    a.xs = firings;
    view.acc_chart.redraw(false, false);
  }
  renderAlerts();
}

function renderAlerts() {
  const body = document.getElementById("alerts");
  const rows = [...alerts.values()].sort((a, b) => b.ts - a.ts || b.id - a.id).slice(0, 200);
  body.replaceChildren(...rows.map((a) => {
    const tr = el("tr", { class: a.state, "data-alert": `${a.pipeline}/${a.id}` });
    const cells = [
      a.id, a.pipeline, a.kind, a.state, a.severity, a.count,
      a.kind === "drift" ? fmt.int(a.last_event_index) : "–",
      a.kind === "drift" ? `${fmt.num(a.loss_before)} → ${fmt.num(a.loss_after)}` : "–",
      "v" + a.model_version,
      a.message || (a.state === "resolved" && a.error_now != null ? `error back to ${fmt.num(a.error_now)}` : `${a.detector} on ${a.signal}`),
    ];
    tr.append(...cells.map((c) => el("td", {}, String(c))));
    return tr;
  }));
}

function connect() {
  const conn = document.getElementById("conn");
  const metrics = new EventSource("/v1/metrics/stream?every=1");
  metrics.addEventListener("sample", (e) => onSample(JSON.parse(e.data)));
  metrics.onopen = () => { conn.textContent = "live"; conn.classList.add("live"); };
  metrics.onerror = () => { conn.textContent = "reconnecting…"; conn.classList.remove("live"); };
  const feed = new EventSource("/v1/alerts/stream");
  feed.addEventListener("alert", (e) => onAlert(JSON.parse(e.data)));
}

window.addEventListener("resize", () => {
  for (const v of pipelines.values()) {
    v.acc_chart.setSize(chartSize(v.acc_chart.root.parentNode));
    v.rate_chart.setSize(chartSize(v.rate_chart.root.parentNode));
  }
});

// for tests and the curious: what the page has drawn
window.driftline = {
  samples: () => samples,
  points: (name) => pipelines.get(name)?.xs.length ?? 0,
  markers: (name) => pipelines.get(name)?.drawn ?? [],
  alerts: () => [...alerts.values()],
};

connect();
