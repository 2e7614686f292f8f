/* ftmatrix report.html — embedded inline by ftmatrix/reports/html.py.
 * Plain JavaScript and SVG, no library: the page must open offline from one file.
 * Data: the JSON in <script id="ftm-data"> (see html.py's page_data). */
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("ftm-data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
    "#ff9da7", "#9c755f", "#5f6b7a", "#1f77b4", "#d62728", "#2ca02c", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79", "#ad494a",
  ];
  const METRIC_NAMES = {
    "test.accuracy": "test acc", "test.f1_macro": "macro F1", "test.f1_weighted": "weighted F1",
    "test.precision_macro": "precision", "test.recall_macro": "recall",
    "test.topk": "top-" + (DATA.k || "k"), "test.loss": "test loss",
    "test.exact_match": "exact match", "test.perplexity": "perplexity",
    ...DATA.metric_names, // a job's own metrics, named as report.md names them
  };
  const CURVE_NAMES = {
    train_loss: "train loss", train_accuracy: "train accuracy", val_loss: "val loss",
    val_accuracy: "val accuracy", val_f1: "val macro F1", lr: "learning rate",
  };
  const DEFAULT_SHOWN = 10;
  const jobs = DATA.jobs;
  const byId = new Map(jobs.map((j) => [j.id, j]));
  const rank = new Map(DATA.best.map((id, i) => [id, i]));
  const shown = new Map(); // job id -> colour, in the order they were ticked
  const listeners = [];

  // ------------------------------------------------------------------ helpers
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  function s(tag, attrs, parent) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, v);
    }
    if (parent) parent.appendChild(node);
    return node;
  }
  function tip(node, text) {
    s("title", {}, node).textContent = text;
    return node;
  }
  function fmt(v, digits) {
    if (v === null || v === undefined) return "";
    if (typeof v !== "number") return String(v);
    return v.toFixed(digits === undefined ? 4 : digits);
  }
  function fmtBytes(n) {  // as tables.bytes_cell: 1536 -> "1.5 KiB"
    if (!n) return "";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i === 0 ? `${n.toFixed(0)} B` : `${n.toFixed(1)} ${units[i]}`;
  }
  function fmtTick(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e4 || a < 1e-3) return v.toExponential(0).replace("e+", "e");
    return String(+v.toPrecision(4));
  }
  function numeric(values) {
    return values.length > 0 && values.every((v) => v !== "" && isFinite(Number(v)));
  }
  function scale(d0, d1, r0, r1, log) {
    if (log) {
      const l0 = Math.log10(d0), l1 = Math.log10(d1);
      const f = (v) => r0 + ((Math.log10(v) - l0) / (l1 - l0 || 1)) * (r1 - r0);
      f.ticks = () => {
        const out = [];
        for (let e = Math.floor(l0); e <= Math.ceil(l1); e++) {
          const t = Math.pow(10, e);
          if (t >= d0 * 0.999 && t <= d1 * 1.001) out.push(t);
        }
        return out.length >= 2 ? out : [d0, d1];
      };
      return f;
    }
    const f = (v) => r0 + ((v - d0) / (d1 - d0 || 1)) * (r1 - r0);
    f.ticks = (n) => niceTicks(d0, d1, n || 5);
    return f;
  }
  function niceTicks(lo, hi, n) {
    if (hi === lo) return [lo];
    const raw = (hi - lo) / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => (hi - lo) / st <= n) || raw;
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(+t.toPrecision(12));
    return out;
  }
  function extent(values, pad) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) if (v !== null && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (lo === Infinity) return [0, 1];
    if (lo === hi) { lo -= Math.abs(lo) * 0.05 || 0.5; hi += Math.abs(hi) * 0.05 || 0.5; }
    const p = (hi - lo) * (pad || 0);
    return [lo - p, hi + p];
  }
  function shade(t) { // 0..1 -> light to dark blue
    const a = [239, 246, 255], b = [8, 69, 148];
    const c = a.map((x, i) => Math.round(x + (b[i] - x) * Math.max(0, Math.min(1, t))));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }
  function ramp(t) { // 0..1 -> the parallel view's metric colours (viridis-like)
    const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
    const x = Math.max(0, Math.min(1, t)) * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
    const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }
  function short(text, n) { return text.length > n ? text.slice(0, n - 1) + "…" : text; }
  function frame(width, height) {
    // Drawn at its own size (never blown up), shrunk to fit a narrow window.
    return s("svg", { viewBox: `0 0 ${width} ${height}`, class: "plot", role: "img", style: `max-width:${width}px` });
  }
  function changed() { for (const f of listeners) f(); }
  function highlight(id, on) {
    document.querySelectorAll(`[data-job="${id}"]`).forEach((n) => n.classList.toggle("hot", on));
  }
  function hoverable(node, id) {
    node.setAttribute("data-job", id);
    node.addEventListener("mouseenter", () => highlight(id, true));
    node.addEventListener("mouseleave", () => highlight(id, false));
    return node;
  }

  // ------------------------------------------------------------- which jobs
  function show(id, on) {
    if (on && !shown.has(id)) {
      const used = new Map(PALETTE.map((c) => [c, 0]));
      for (const c of shown.values()) used.set(c, used.get(c) + 1);
      const least = Math.min(...used.values());
      shown.set(id, PALETTE.find((c) => used.get(c) === least));
    } else if (!on) shown.delete(id);
  }
  function setShown(ids) {
    shown.clear();
    ids.forEach((id) => show(id, true));
    changed();
  }
  DATA.best.slice(0, DEFAULT_SHOWN).filter((id) => DATA.curves[id]).forEach((id) => show(id, true));

  // ------------------------------------------------------------------ header
  function header() {
    const counts = {};
    jobs.forEach((j) => { counts[j.state] = (counts[j.state] || 0) + 1; });
    const chips = h("div", { class: "chips" });
    for (const st of ["done", "failed", "pruned", "damaged", "pending"]) {
      if (counts[st]) chips.append(h("span", { class: "chip" }, h("b", { text: String(counts[st]) }), " " + st));
    }
    const best = byId.get(DATA.best[0]);
    if (best) {
      chips.append(h("span", { class: "chip" }, "best " + METRIC_NAMES[DATA.metric] + ": ",
        h("b", { text: fmt(best.metrics[DATA.metric]) }), " — " + best.label));
    }
    const damaged = DATA.problems.length ? h("section", { class: "card", id: "problems" }, h("h2", { text: "Damaged files" }),
      h("p", { class: "note", text: "Left out of the tables and plots below:" }), h("ul", {}, ...DATA.problems.map((p) => h("li", { text: p })))) : null;
    const note = DATA.metric_note ? h("p", { class: "note", id: "metric-note", text: DATA.metric_note }) : null;
    return [h("h1", { text: DATA.name }), DATA.description ? h("p", { class: "lead", text: DATA.description }) : null, chips, note, damaged];
  }

  // ------------------------------------------------------------------- table
  function columns() {
    const cols = [];
    for (const axis of DATA.axes) {
      const values = jobs.map((j) => j.settings[axis]).filter((v) => v !== undefined);
      const num = numeric(values);
      cols.push({ title: axis, num, get: (j) => (num ? Number(j.settings[axis]) : j.settings[axis] ?? ""), text: (j) => j.settings[axis] ?? "" });
    }
    for (const m of DATA.metrics) {
      cols.push({ title: METRIC_NAMES[m] || m, num: true, metric: m, get: (j) => j.metrics[m], text: (j) => fmt(j.metrics[m]) });
    }
    cols.push({ title: "best epoch", num: true, get: (j) => j.best_epoch, text: (j) => fmt(j.best_epoch, 0) });
    cols.push({ title: "epochs", num: true, get: (j) => j.epochs, text: (j) => fmt(j.epochs, 0) });
    cols.push({ title: "trainable %", num: true, get: (j) => j.trainable_percent, text: (j) => fmt(j.trainable_percent, 2) });
    // shown when some job wrote them (0 adapter bytes: no adapter, the full model)
    if (jobs.some((j) => j.adapter_bytes)) cols.push({ title: "adapter", num: true, get: (j) => j.adapter_bytes || null, text: (j) => fmtBytes(j.adapter_bytes) });
    if (jobs.some((j) => j.peak_memory_bytes)) cols.push({ title: "peak memory", num: true, get: (j) => j.peak_memory_bytes, text: (j) => fmtBytes(j.peak_memory_bytes) });
    if (jobs.some((j) => j.tokens_per_second)) cols.push({ title: "tokens/s", num: true, get: (j) => j.tokens_per_second, text: (j) => fmt(j.tokens_per_second, 0) });
    cols.push({ title: "s/epoch", num: true, get: (j) => j.seconds_per_epoch, text: (j) => fmt(j.seconds_per_epoch, 1) });
    cols.push({ title: "state", num: false, get: (j) => j.state, text: (j) => (j.error ? `${j.state} (${j.error})` : j.state) });
    return cols;
  }

  function table() {
    const cols = columns();
    const metricCol = cols.findIndex((c) => c.metric === DATA.metric);
    let sortCol = metricCol, sortDir = DATA.larger ? -1 : 1;
    const filter = h("input", { type: "search", placeholder: "Filter jobs: lr=0.1 r8 failed …", "aria-label": "filter" });
    const count = h("span", { class: "count" });
    const body = h("tbody");
    const heads = cols.map((c, i) => h("th", { class: c.num ? "num" : null, "data-col": String(i), onclick: () => sortBy(i) }, c.title, h("span", { class: "arrow" })));
    const rows = new Map();
    for (const j of jobs) {
      const box = h("input", { type: "checkbox", class: "show", "data-job": j.id, disabled: DATA.curves[j.id] ? null : true, title: "draw its curves" });
      box.addEventListener("change", () => { show(j.id, box.checked); changed(); });
      const swatch = h("span", { class: "swatch" });
      const tr = hoverable(h("tr", { class: rank.get(j.id) === 0 ? "best" : null }, h("td", {}, box, swatch)), j.id);
      cols.forEach((c) => tr.append(h("td", { class: (c.num ? "num" : "") + (c.title === "state" ? " state-" + j.state : ""), text: c.text(j) })));
      tr.title = j.label + " · " + j.id;
      rows.set(j.id, { tr, box, swatch, text: (j.label + " " + j.id + " " + cols.map((c) => c.text(j)).join(" ")).toLowerCase() });
    }
    function sortBy(i) {
      if (i === sortCol) sortDir = -sortDir;
      else { sortCol = i; sortDir = cols[i].metric ? (cols[i].metric === "test.loss" ? 1 : -1) : 1; }
      order();
    }
    function order() {
      const c = cols[sortCol];
      const sorted = [...jobs].sort((a, b) => {
        const x = c.get(a), y = c.get(b);
        const mx = x === null || x === undefined || x === "", my = y === null || y === undefined || y === "";
        if (mx || my) return mx === my ? 0 : mx ? 1 : -1; // missing values last, either way
        return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
      });
      const frag = document.createDocumentFragment();
      sorted.forEach((j) => frag.appendChild(rows.get(j.id).tr));
      body.appendChild(frag);
      heads.forEach((th, k) => { th.lastChild.textContent = k === sortCol ? (sortDir > 0 ? "▲" : "▼") : ""; });
    }
    function applyFilter() {
      const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      let n = 0;
      for (const r of rows.values()) {
        r.tr.hidden = !words.every((w) => r.text.includes(w));
        if (!r.tr.hidden) n++;
      }
      count.textContent = `${n} of ${jobs.length} jobs · ${shown.size} drawn`;
      changed();
    }
    filter.addEventListener("input", applyFilter);
    listeners.push(() => {
      for (const [id, r] of rows) {
        r.box.checked = shown.has(id);
        r.swatch.style.background = shown.get(id) || "transparent";
      }
      const visible = [...rows.values()].filter((r) => !r.tr.hidden).length;
      count.textContent = `${visible} of ${jobs.length} jobs · ${shown.size} drawn`;
    });
    const visibleIds = () => jobs.filter((j) => !rows.get(j.id).tr.hidden && DATA.curves[j.id]).map((j) => j.id);
    DATA.isVisible = (id) => !rows.get(id).tr.hidden;
    const tools = h("div", { class: "toolbar" }, filter,
      h("button", { onclick: () => setShown(DATA.best.filter((id) => DATA.curves[id] && DATA.isVisible(id)).slice(0, DEFAULT_SHOWN)), text: `Draw best ${DEFAULT_SHOWN}` }),
      h("button", { onclick: () => setShown(visibleIds().slice(0, 200)), text: "Draw filtered" }),
      h("button", { onclick: () => setShown([]), text: "Clear" }), count);
    order();
    const head = h("tr", {}, h("th", { class: "nosort", text: "draw" }), ...heads);
    return h("section", { class: "card", id: "comparison" },
      h("h2", { text: "Comparison" }),
      h("p", { class: "note", text: `One row per job. Click a header to sort; type to filter (every word must match); tick a job to draw its curves. ★ best by ${METRIC_NAMES[DATA.metric]}.` }),
      tools, h("div", { class: "table-wrap" }, h("table", { id: "jobs-table" }, h("thead", {}, head), body)));
  }

  // ------------------------------------------------------------------ curves
  function curvePanel(defaultKey, keys) {
    const select = h("select", { "aria-label": "metric" }, ...keys.map((k) => h("option", { value: k, selected: k === defaultKey, text: CURVE_NAMES[k] || k })));
    const holder = h("div", { class: "chart" });
    function draw() {
      holder.replaceChildren();
      const key = select.value;
      const W = 560, H = 330, L = 52, R = 14, T = 12, B = 36;
      const series = [...shown.keys()].filter((id) => DATA.curves[id] && DATA.curves[id][key]);
      if (!series.length) { holder.append(h("div", { class: "empty", text: "Tick jobs in the table to draw their curves." })); return; }
      const xs = series.flatMap((id) => DATA.curves[id].epoch), ys = series.flatMap((id) => DATA.curves[id][key]);
      const [x0, x1] = extent(xs, 0), [y0, y1] = extent(ys, 0.05);
      const log = key === "lr" && y0 > 0 && y1 / y0 > 20;
      const x = scale(x0, x1, L, W - R), y = scale(log ? Math.max(y0, 1e-12) : y0, y1, H - B, T, log);
      const svg = frame(W, H);
      axes(svg, x, y, { W, H, L, R, T, B, xLabel: "epoch", yLabel: CURVE_NAMES[key] || key, xInt: true });
      for (const id of series) {
        const c = DATA.curves[id], pts = [];
        c.epoch.forEach((e, i) => { if (c[key][i] !== null) pts.push([x(e), y(c[key][i])]); });
        if (!pts.length) continue;
        const d = "M" + pts.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join("L");
        const path = s("path", { d, class: "curve", stroke: shown.get(id) }, svg);
        tip(hoverable(path, id), byId.get(id).label);
        if (pts.length <= 40 && series.length <= 20) {
          for (const p of pts) tip(hoverable(s("circle", { cx: p[0], cy: p[1], r: 2.6, fill: shown.get(id), class: "dot" }, svg), id), byId.get(id).label);
        }
      }
      holder.append(svg);
    }
    select.addEventListener("change", draw);
    listeners.push(draw);
    return h("div", { class: "panel" }, h("div", { class: "head" }, select), holder);
  }

  function axes(svg, x, y, o) {
    const g = s("g", { class: "axis" }, svg), grid = s("g", { class: "grid" }, svg);
    let xt = x.ticks(6);
    if (o.xInt) xt = xt.filter((t) => Number.isInteger(t));
    for (const t of xt) {
      s("line", { x1: x(t), x2: x(t), y1: o.H - o.B, y2: o.H - o.B + 4 }, g);
      s("text", { x: x(t), y: o.H - o.B + 16, "text-anchor": "middle" }, g).textContent = fmtTick(t);
    }
    for (const t of y.ticks(5)) {
      s("line", { x1: o.L, x2: o.W - o.R, y1: y(t), y2: y(t) }, grid);
      s("text", { x: o.L - 6, y: y(t) + 4, "text-anchor": "end" }, g).textContent = fmtTick(t);
    }
    s("line", { x1: o.L, x2: o.W - o.R, y1: o.H - o.B, y2: o.H - o.B }, g);
    s("line", { x1: o.L, x2: o.L, y1: o.T, y2: o.H - o.B }, g);
    s("text", { x: (o.L + o.W - o.R) / 2, y: o.H - 4, "text-anchor": "middle" }, g).textContent = o.xLabel;
    s("text", { x: 12, y: (o.T + o.H - o.B) / 2, "text-anchor": "middle", transform: `rotate(-90 12 ${(o.T + o.H - o.B) / 2})` }, g).textContent = o.yLabel;
    svg.insertBefore(grid, svg.firstChild);
  }

  function curves() {
    const keys = Object.keys(CURVE_NAMES).filter((k) => Object.values(DATA.curves).some((c) => c[k]));
    if (!keys.length) return null;
    const pick = (...ks) => ks.find((k) => keys.includes(k)) || keys[0];
    const legend = h("div", { class: "legend" });
    listeners.push(() => {
      legend.replaceChildren(...[...shown].map(([id, colour]) => hoverable(h("span", { title: "click to hide", onclick: () => { show(id, false); changed(); } },
        h("span", { class: "swatch", style: `background:${colour}` }), " " + byId.get(id).label), id)));
    });
    return h("section", { class: "card", id: "curves" }, h("h2", { text: "Learning curves" }),
      h("p", { class: "note", text: "The jobs ticked in the table, overlaid; pick a metric per panel. Click a legend entry to hide a job." }),
      h("div", { class: "grid2" }, curvePanel(pick("val_accuracy", "train_accuracy"), keys), curvePanel(pick("val_loss", "train_loss"), keys)), legend);
  }

  // ------------------------------------------------- parallel coordinates
  function parallel() {
    if (!DATA.axes.length || !DATA.best.length) return null;
    const holder = h("div");
    function draw() {
      holder.replaceChildren();
      const done = DATA.best.map((id) => byId.get(id)).filter((j) => !DATA.isVisible || DATA.isVisible(j.id));
      if (!done.length) { holder.append(h("div", { class: "empty", text: "No finished job matches the filter." })); return; }
      const dims = DATA.axes.map((axis) => dimension(axis, done.map((j) => j.settings[axis] ?? "")));
      const mv = done.map((j) => j.metrics[DATA.metric]);
      const [m0, m1] = extent(mv, 0.02);
      dims.push({ title: METRIC_NAMES[DATA.metric], pos: null, lo: m0, hi: m1, num: true, log: false });
      const W = Math.max(1180, 170 * dims.length), H = 360, T = 34, B = 22, L = 60, R = 60;
      const svg = frame(W, H);
      const xs = dims.map((_, i) => L + (i * (W - L - R)) / Math.max(1, dims.length - 1));
      dims.forEach((d) => { d.y = d.num ? scale(d.lo, d.hi, H - B, T, d.log) : (v) => T + (d.values.indexOf(v) + 0.5) * ((H - B - T) / d.values.length); });
      const lines = s("g", {}, svg);
      const order = [...done].reverse(); // best drawn last, on top
      for (const j of order) {
        const ys = dims.map((d, i) => (i === dims.length - 1 ? d.y(j.metrics[DATA.metric]) : d.y(d.num ? Number(j.settings[DATA.axes[i]]) : (j.settings[DATA.axes[i]] ?? ""))));
        const d = "M" + ys.map((yy, i) => xs[i].toFixed(1) + "," + yy.toFixed(1)).join("L");
        const t = (j.metrics[DATA.metric] - m0) / (m1 - m0 || 1);
        const on = shown.has(j.id);
        const path = s("path", { d, class: "line", stroke: on ? shown.get(j.id) : ramp(DATA.larger ? t : 1 - t), "stroke-width": on ? 3 : 1.4, opacity: on ? 1 : done.length > 200 ? 0.35 : 0.7 }, lines);
        path.addEventListener("click", () => { show(j.id, !shown.has(j.id)); changed(); });
        tip(hoverable(path, j.id), `${j.label}: ${fmt(j.metrics[DATA.metric])} (click to draw its curves)`);
      }
      dims.forEach((d, i) => {
        const g = s("g", { class: "axis" }, svg);
        s("line", { x1: xs[i], x2: xs[i], y1: T, y2: H - B }, g);
        s("text", { x: xs[i], y: T - 14, "text-anchor": "middle", class: "title" }, g).textContent = short(d.title, 24);
        const ticks = d.num ? d.y.ticks(5) : d.values;
        for (const t of ticks) {
          const yy = d.y(t);
          s("line", { x1: xs[i] - 3, x2: xs[i] + 3, y1: yy, y2: yy }, g);
          const label = s("text", { x: xs[i] + 6, y: yy + 4, "text-anchor": "start", "paint-order": "stroke", stroke: "#fff", "stroke-width": 3 }, g);
          label.textContent = d.num ? fmtTick(t) : short(String(t), 14);
        }
      });
      holder.append(svg);
    }
    listeners.push(draw);
    return h("section", { class: "card", id: "parallel" }, h("h2", { text: "Settings → " + METRIC_NAMES[DATA.metric] }),
      h("p", { class: "note", text: `One line per finished job (those the filter keeps), from its settings to its ${METRIC_NAMES[DATA.metric]}; colour by the metric (bright = better), jobs drawn as curves in their colour. Click a line to draw or hide its curves.` }),
      holder);
  }

  function dimension(title, values) {
    if (numeric(values)) {
      const nums = values.map(Number);
      let [lo, hi] = extent(nums, 0);
      const log = lo > 0 && hi / lo >= 20;
      if (!log) [lo, hi] = extent(nums, 0.05);
      return { title, num: true, lo, hi, log };
    }
    const seen = [];
    for (const j of jobs) { const v = j.settings[title] ?? ""; if (!seen.includes(v)) seen.push(v); }
    return { title, num: false, values: seen };
  }

  // ---------------------------------------------------------------- heatmaps
  function heatmap(rowsLabels, colLabels, cell, opts) {
    const cw = Math.max(8, Math.min(46, 640 / colLabels.length)), ch = Math.max(12, Math.min(26, 420 / rowsLabels.length));
    const L = opts.left, T = opts.top;
    const W = L + cw * colLabels.length + 10, H = T + ch * rowsLabels.length + 24;
    const svg = frame(W, H);
    const text = cw >= 30 && ch >= 14;
    rowsLabels.forEach((r, i) => {
      s("text", { x: L - 6, y: T + i * ch + ch / 2 + 4, "text-anchor": "end" }, svg).textContent = short(r, opts.rowChars || 34);
      colLabels.forEach((c, k) => {
        const [value, t, label] = cell(i, k);
        const rect = s("rect", { x: L + k * cw, y: T + i * ch, width: cw - 1, height: ch - 1, fill: value === null ? "#f0f0f0" : shade(t), class: "cell" }, svg);
        tip(rect, `${r} · ${c}: ${label}`);
        if (text && value !== null) {
          s("text", { x: L + k * cw + cw / 2, y: T + i * ch + ch / 2 + 4, "text-anchor": "middle", style: `fill:${t > 0.55 ? "#fff" : "#1f2933"};font-size:10px` }, svg).textContent = opts.cellText(value);
        }
      });
    });
    colLabels.forEach((c, k) => {
      const x = L + k * cw + cw / 2;
      s("text", { x, y: T - 6, "text-anchor": "start", transform: `rotate(-40 ${x} ${T - 6})` }, svg).textContent = short(c, 16);
    });
    if (opts.xLabel) s("text", { x: L + (cw * colLabels.length) / 2, y: H - 4, "text-anchor": "middle" }, svg).textContent = opts.xLabel;
    return svg;
  }

  function perClass() {
    if (!DATA.classes.length || !Object.keys(DATA.per_class).length) return null;
    const holder = h("div");
    function draw() {
      let ids = [...shown.keys()].filter((id) => DATA.per_class[id]);
      if (!ids.length) ids = DATA.best.filter((id) => DATA.per_class[id]).slice(0, DEFAULT_SHOWN);
      const labels = ids.map((id) => byId.get(id).label);
      holder.replaceChildren(heatmap(labels, DATA.classes, (i, k) => {
        const v = DATA.per_class[ids[i]][k];
        return [v, v, fmt(v)];
      }, { left: 230, top: 70, cellText: (v) => fmt(v, 2), xLabel: "class" }));
    }
    listeners.push(draw);
    return h("section", { class: "card", id: "per-class" }, h("h2", { text: "Per-class accuracy" }),
      h("p", { class: "note", text: "The jobs drawn as curves (else the best ten), one row each; darker = higher accuracy." }), holder);
  }

  function confusion() {
    const ids = DATA.best.filter((id) => DATA.confusion[id]);
    if (!ids.length) return null;
    const select = h("select", { "aria-label": "job" }, ...ids.map((id, i) => h("option", { value: id, text: (i === 0 ? "★ " : "") + byId.get(id).label })));
    const holder = h("div");
    function draw() {
      const c = DATA.confusion[select.value];
      const totals = c.matrix.map((row) => row.reduce((a, b) => a + b, 0));
      holder.replaceChildren(heatmap(c.classes, c.classes, (i, k) => {
        const v = c.matrix[i][k], t = totals[i] ? v / totals[i] : 0;
        return [v, t, `${v} (${fmt(t * 100, 1)}% of true ${c.classes[i]})`];
      }, { left: 110, top: 70, rowChars: 16, cellText: (v) => String(v), xLabel: "predicted (rows: true class)" }));
    }
    select.addEventListener("change", draw);
    draw();
    const embedded = ids.length < DATA.best.length ? ` Embedded for the ${ids.length} best jobs.` : "";
    return h("section", { class: "card", id: "confusion" }, h("h2", { text: "Confusion matrix" }),
      h("div", { class: "toolbar" }, select),
      h("p", { class: "note", text: "Test-set counts; colour = share of the true class (row)." + embedded }), holder);
  }

  // ------------------------------------------------------------------ search
  function searchSection() {
    if (!DATA.search) return null;
    const S = DATA.search, larger = S.direction === "maximize";
    const charts = S.points.map((p) => {
      const scored = p.trials.filter((t) => t.value !== null);
      const W = 560, H = 300, L = 52, R = 14, T = 24, B = 36;
      const svg = frame(W, H);
      if (!scored.length) return h("div", { class: "empty", text: "No trial has a value yet." });
      const [x0, x1] = extent(p.trials.map((t) => t.number), 0), [y0, y1] = extent(scored.map((t) => t.value), 0.05);
      const x = scale(x0 - 0.5, x1 + 0.5, L, W - R), y = scale(y0, y1, H - B, T);
      axes(svg, x, y, { W, H, L, R, T, B, xLabel: "trial (in the order they ran)", yLabel: S.metric, xInt: true });
      if (p.label) s("text", { x: L, y: 14, class: "title" }, svg).textContent = p.label;
      let best = null;
      const steps = [];
      for (const t of [...scored].sort((a, b) => a.number - b.number)) {
        if (t.state !== "complete") continue;
        if (best === null || (larger ? t.value > best : t.value < best)) best = t.value;
        steps.push([t.number, best]);
      }
      if (steps.length) {
        steps.push([x1, steps[steps.length - 1][1]]);
        let d = `M${x(steps[0][0])},${y(steps[0][1])}`;
        for (let i = 1; i < steps.length; i++) d += `H${x(steps[i][0])}V${y(steps[i][1])}`;
        s("path", { d, class: "curve", stroke: "#f28e2b" }, svg);
      }
      for (const t of scored) {
        const cx = x(t.number), cy = y(t.value), text = `trial ${t.number} (${t.state}): ${fmt(t.value)} ${t.label}`;
        if (t.state === "complete") tip(s("circle", { cx, cy, r: 3.5, fill: "#4e79a7" }, svg), text);
        else tip(s("path", { d: `M${cx - 3},${cy - 3}L${cx + 3},${cy + 3}M${cx - 3},${cy + 3}L${cx + 3},${cy - 3}`, stroke: "#9aa5b1", "stroke-width": 1.6 }, svg), text);
      }
      return svg;
    });
    return h("section", { class: "card", id: "search" }, h("h2", { text: `Search: ${S.strategy}, ${S.metric} (${S.direction})` }),
      h("p", { class: "note", text: "Each trial in the order it ran: blue dots complete, grey crosses pruned (at the validation value they were stopped with); the orange line is the best so far." }),
      h("div", { class: "grid2" }, ...charts));
  }

  // ------------------------------------------------------------------- page
  const app = document.getElementById("app");
  app.replaceChildren(...header().filter(Boolean));
  for (const part of [table, curves, parallel, perClass, confusion, searchSection]) {
    const node = part();
    if (node) app.append(node);
  }
  app.append(h("footer", { text: "ftmatrix report · one self-contained page: no network needed." }));
  changed();
  window.ftmatrixReady = true; // tests wait for this
  // When the first frame with everything drawn is on screen (benchmarks/html_report.py).
  requestAnimationFrame(() => setTimeout(() => { window.ftmatrixDrawn = performance.now(); }, 0));
})();
