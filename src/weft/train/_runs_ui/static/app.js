/* weft runs page: the runs table, compare charts (uPlot), parallel coordinates, run pages.
 * Everything it loads comes from this server. window.weftUI exposes the page's state
 * (tests wait on it instead of sleeping). */
"use strict";

(function () {
  const PALETTE = ["#2463eb", "#e4572e", "#17a34a", "#9333ea", "#d97706", "#0891b2", "#db2777", "#4b5563",
                   "#65a30d", "#7c3aed"];
  const POLL_RUNNING_MS = 500, POLL_IDLE_MS = 2000, TABLE_REFRESH_MS = 5000;
  const $ = (id) => document.getElementById(id);

  const state = {
    token: null, keys: { params: [], metrics: [], tags: [], runs: 0 },
    filter: "", sort: "created", order: "desc", offset: 0, limit: 100, columns: null,
    rows: [], total: 0, selected: new Map(), info: new Map(), shownMetrics: [],
    xMode: "step", smoothing: 0, logScale: false,
    series: new Map(), cursor: null, charts: new Map(),
    polls: 0, draws: 0, tableLoads: 0, ready: false, lastError: null, view: "list",
    pcMetric: null, pcReduce: "last", runCount: 0, lastTableLoad: 0,
  };

  // ---- talking to the API --------------------------------------------------------------
  function takeToken() {
    const m = location.hash.match(/token=([^&]+)/);
    if (m) {
      sessionStorage.setItem("weft-token", decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname + location.search + "#/");
    }
    state.token = sessionStorage.getItem("weft-token");
  }

  async function api(path, params) {
    const url = new URL(path, location.href);
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
    }
    const headers = state.token ? { authorization: "Bearer " + state.token } : {};
    const response = await fetch(url, { headers });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = body.error || (body.detail && JSON.stringify(body.detail)) || response.statusText;
      const error = new Error(detail);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // JSON carries NaN and infinities as strings
  const num = (v) => (typeof v === "string" ? Number(v) : v);
  const finite = (v) => typeof v === "number" && Number.isFinite(v);

  function fmt(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "string" && (v === "NaN" || v === "Infinity" || v === "-Infinity")) {
      return v === "NaN" ? "nan" : v === "Infinity" ? "inf" : "-inf";
    }
    if (typeof v === "number") {
      if (Number.isInteger(v)) return String(v);
      const a = Math.abs(v);
      return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : String(+v.toPrecision(5));
    }
    if (typeof v === "boolean") return String(v);
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function when(t) {
    if (!t) return "";
    const d = new Date(t * 1000), p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  function duration(s) {
    if (s === null || s === undefined) return "";
    if (s < 120) return s.toFixed(1) + " s";
    if (s < 7200) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  function showError(message) {
    const box = $("error");
    state.lastError = message;
    box.hidden = !message;
    box.textContent = message || "";
    $("filter").classList.toggle("bad", !!message);
  }

  // ---- columns ---------------------------------------------------------------------------
  const BASE_COLUMNS = ["name", "status", "created", "duration"];

  function defaultColumns() {
    const params = state.keys.params.slice(0, 3).map((k) => "param:" + k.key);
    const metrics = state.keys.metrics.slice(0, 3).map((k) => "metric:" + k.key);
    return [...BASE_COLUMNS, ...params, ...metrics];
  }

  function columnLabel(c) {
    if (c === "created") return "started";
    const [kind, key, reduce] = splitColumn(c);
    if (kind === "param" || kind === "tag") return key;
    if (kind === "metric") return key + (reduce && reduce !== "last" ? " (" + reduce + ")" : "");
    return c;
  }

  function splitColumn(c) {
    const first = c.indexOf(":");
    if (first < 0) return [c, null, null];
    const kind = c.slice(0, first);
    let key = c.slice(first + 1), reduce = null;
    if (kind === "metric") {
      const m = key.match(/^(.*):(min|max|last)$/);
      if (m) { key = m[1]; reduce = m[2]; }
    }
    return [kind, key, reduce];
  }

  function sortKey(c) {
    const [kind, key, reduce] = splitColumn(c);
    if (!key) return c;
    const quoted = /^[A-Za-z_][\w./-]*$/.test(key) ? key : JSON.stringify(key);
    return kind + ":" + quoted + (reduce ? ":" + reduce : "");
  }

  function cell(run, c) {
    const [kind, key, reduce] = splitColumn(c);
    switch (kind) {
      case "name": return { text: run.name, link: "#/run/" + run.id };
      case "status": return { text: run.status + (run.has_error ? " !" : ""), cls: "status-" + run.status };
      case "created": return { text: when(run.created) };
      case "duration": return { text: duration(run.duration), cls: "num" };
      case "param": return { text: fmt(run.params[key]), cls: typeof run.params[key] === "number" ? "num" : "" };
      case "tag": return { text: fmt(run.tags[key]) };
      case "metric": {
        const m = run.metrics[key];
        if (!m) return { text: "" };
        const v = m[reduce || "last"];
        return { text: fmt(v), cls: "num" + (typeof v === "string" ? " nonfinite" : "") };
      }
      default: return { text: "" };
    }
  }

  function renderColumnPicker() {
    const list = $("column-list");
    list.textContent = "";
    const groups = [["run", BASE_COLUMNS], ["params", state.keys.params.map((k) => "param:" + k.key)],
                    ["metrics (last)", state.keys.metrics.map((k) => "metric:" + k.key)],
                    ["metrics (min)", state.keys.metrics.map((k) => "metric:" + k.key + ":min")],
                    ["metrics (max)", state.keys.metrics.map((k) => "metric:" + k.key + ":max")],
                    ["tags", state.keys.tags.map((k) => "tag:" + k.key)]];
    for (const [title, columns] of groups) {
      if (!columns.length) continue;
      const h = document.createElement("h4");
      h.textContent = title;
      list.appendChild(h);
      for (const c of columns) {
        const label = document.createElement("label");
        const box = document.createElement("input");
        box.type = "checkbox";
        box.checked = state.columns.includes(c);
        box.dataset.column = c;
        box.addEventListener("change", () => {
          state.columns = box.checked ? [...state.columns, c] : state.columns.filter((x) => x !== c);
          localStorage.setItem("weft-columns", JSON.stringify(state.columns));
          renderTable();
        });
        label.append(box, " " + c.replace(/^(param|metric|tag):/, ""));
        list.appendChild(label);
      }
    }
  }

  // ---- the runs table ----------------------------------------------------------------------
  async function loadTable() {
    try {
      const page = await api("api/runs", { filter: state.filter, sort: state.sort, order: state.order,
                                           offset: state.offset, limit: state.limit });
      state.rows = page.runs;
      state.total = page.total;
      for (const run of page.runs) state.info.set(run.id, run);
      state.tableLoads += 1;
      state.lastTableLoad = Date.now();
      showError(null);
      renderTable();
    } catch (e) {
      showError(e.message);
    }
  }

  function renderTable() {
    const head = $("table").tHead, body = $("table").tBodies[0];
    head.textContent = "";
    body.textContent = "";
    const tr = document.createElement("tr");
    const pick = document.createElement("th");
    pick.textContent = "";
    tr.appendChild(pick);
    for (const c of state.columns) {
      const th = document.createElement("th");
      th.textContent = columnLabel(c);
      th.title = c;
      th.dataset.column = c;
      if (sortKey(c) === state.sort) th.className = "sorted" + (state.order === "asc" ? " asc" : "");
      th.addEventListener("click", () => {
        const key = sortKey(c);
        if (state.sort === key) state.order = state.order === "asc" ? "desc" : "asc";
        else { state.sort = key; state.order = c === "name" ? "asc" : "desc"; }
        state.offset = 0;
        loadTable();
      });
      tr.appendChild(th);
    }
    head.appendChild(tr);
    const fragment = document.createDocumentFragment();
    for (const run of state.rows) {
      const row = document.createElement("tr");
      row.dataset.run = run.id;
      const chosen = state.selected.get(run.id);
      if (chosen) row.className = "selected";
      const td = document.createElement("td");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = !!chosen;
      box.addEventListener("change", () => toggleRun(run, box.checked));
      td.appendChild(box);
      if (chosen) {
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = chosen.color;
        td.appendChild(swatch);
      }
      row.appendChild(td);
      for (const c of state.columns) {
        const value = cell(run, c);
        const cellNode = document.createElement("td");
        if (value.cls) cellNode.className = value.cls;
        if (value.link) {
          const a = document.createElement("a");
          a.href = value.link;
          a.textContent = value.text;
          cellNode.appendChild(a);
        } else {
          cellNode.textContent = value.text;
        }
        cellNode.title = value.text;
        row.appendChild(cellNode);
      }
      fragment.appendChild(row);
    }
    body.appendChild(fragment);
    const first = state.total ? state.offset + 1 : 0;
    $("range").textContent = ` ${first}\u2013${state.offset + state.rows.length} of ${state.total} `;
    $("prev").disabled = state.offset === 0;
    $("next").disabled = state.offset + state.rows.length >= state.total;
    $("summary").textContent = `${state.keys.runs} runs`;
  }

  // ---- selection and charts ------------------------------------------------------------------
  function nextColor() {
    const used = new Set([...state.selected.values()].map((s) => s.color));
    return PALETTE.find((c) => !used.has(c)) || PALETTE[state.selected.size % PALETTE.length];
  }

  function toggleRun(run, on) {
    if (on && !state.selected.has(run.id)) state.selected.set(run.id, { id: run.id, name: run.name, color: nextColor() });
    if (!on) state.selected.delete(run.id);
    renderTable();
    refreshCompare();
  }

  function metricKeysOfSelection() {
    const keys = new Set();
    for (const id of state.selected.keys()) {
      const info = state.info.get(id);
      if (info) Object.keys(info.metrics).forEach((k) => keys.add(k));
    }
    return [...keys].sort();
  }

  async function refreshCompare() {
    const ids = [...state.selected.keys()];
    $("compare").hidden = ids.length === 0;
    $("selected-count").textContent = ids.length ? `(${ids.length} runs)` : "";
    if (!ids.length) {
      destroyCharts();
      state.series.clear();
      state.cursor = null;
      return;
    }
    const available = metricKeysOfSelection();
    if (!state.shownMetrics.length || !state.shownMetrics.some((k) => available.includes(k))) {
      const first = state.keys.metrics.map((m) => m.key).filter((k) => available.includes(k));
      state.shownMetrics = first.slice(0, 2);
    }
    renderMetricPicks(available);
    await loadSeries();
    drawParallel();
  }

  function renderMetricPicks(available) {
    const box = $("metric-picks");
    box.textContent = "";
    for (const key of available) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.checked = state.shownMetrics.includes(key);
      input.dataset.metric = key;
      input.addEventListener("change", () => {
        state.shownMetrics = input.checked ? [...state.shownMetrics, key] : state.shownMetrics.filter((k) => k !== key);
        loadSeries();
      });
      label.append(input, " " + key);
      box.appendChild(label);
    }
    const pc = $("pc-metric");
    const current = state.pcMetric;
    pc.textContent = "";
    for (const key of available) {
      const option = document.createElement("option");
      option.value = option.textContent = key;
      pc.appendChild(option);
    }
    state.pcMetric = available.includes(current) ? current : state.shownMetrics[0] || available[0] || null;
    if (state.pcMetric) pc.value = state.pcMetric;
  }

  async function loadSeries() {
    const ids = [...state.selected.keys()];
    const keys = state.shownMetrics;
    if (!ids.length || !keys.length) { destroyCharts(); return; }
    try {
      const missing = ids.filter((id) => !state.info.has(id));
      if (missing.length) {
        const page = await api("api/runs", { ids: missing.join(","), limit: missing.length });
        for (const run of page.runs) state.info.set(run.id, run);
      }
      const body = await api("api/series", { runs: ids.join(","), keys: keys.join(","), max_points: 1500 });
      state.series.clear();
      for (const s of body.series) {
        state.series.set(s.run + "\u0000" + s.key, {
          steps: s.steps, values: s.values.map(num), times: s.times, points: s.points, downsampled: s.downsampled,
        });
      }
      state.cursor = body.cursor;
      drawCharts();
    } catch (e) {
      showError(e.message);
    }
  }

  function destroyCharts() {
    for (const chart of state.charts.values()) chart.plot.destroy();
    state.charts.clear();
    $("charts").textContent = "";
  }

  function smooth(values, weight) {
    if (!weight) return values;
    // TensorBoard's debiased exponential moving average; NaN and infinities pass through as gaps
    const out = new Array(values.length);
    let last = 0, count = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (!finite(v)) { out[i] = null; continue; }
      last = last * weight + (1 - weight) * v;
      count += 1;
      out[i] = last / (1 - Math.pow(weight, count));
    }
    return out;
  }

  function xs(run, s) {
    if (state.xMode === "step") return s.steps;
    if (state.xMode === "wall") return s.times;
    const info = state.info.get(run);
    const origin = info ? info.created : (s.times[0] || 0);
    return s.times.map((t) => t - origin);
  }

  function chartData(key) {
    const tables = [], series = [], notes = [];
    for (const [id, chosen] of state.selected) {
      const s = state.series.get(id + "\u0000" + key);
      if (!s || !s.steps.length) continue;
      let x = xs(id, s);
      let y = smooth(s.values, state.smoothing).map((v) => (finite(v) && !(state.logScale && v <= 0) ? v : null));
      // uPlot.join wants each table's x ascending
      const order = x.map((_, i) => i);
      let sorted = true;
      for (let i = 1; i < x.length; i++) if (x[i] < x[i - 1]) { sorted = false; break; }
      if (!sorted) {
        order.sort((a, b) => x[a] - x[b]);
        x = order.map((i) => x[i]);
        y = order.map((i) => y[i]);
      }
      tables.push([x, y]);
      series.push({ label: chosen.name, stroke: chosen.color, width: 1.5, spanGaps: false, points: { show: false } });
      const bad = s.values.filter((v) => !finite(v)).length;
      if (bad) notes.push(`${chosen.name}: ${bad} nan/inf`);
      if (s.downsampled) notes.push(`${chosen.name}: ${s.points} points, ${s.steps.length} drawn (min/max kept)`);
    }
    if (!tables.length) return null;
    const data = tables.length === 1 ? tables[0] : uPlot.join(tables, tables.map(() => [1]));
    return { data, series, notes };
  }

  function drawCharts() {
    const container = $("charts");
    for (const [key, chart] of state.charts) {
      if (!state.shownMetrics.includes(key)) { chart.plot.destroy(); chart.node.remove(); state.charts.delete(key); }
    }
    for (const key of state.shownMetrics) {
      const built = chartData(key);
      let chart = state.charts.get(key);
      const signature = [...state.selected.keys()].join(",") + "|" + state.xMode + "|" + state.logScale;
      if (chart && (chart.signature !== signature || !built)) {
        chart.plot.destroy();
        chart.node.remove();
        state.charts.delete(key);
        chart = null;
      }
      if (!built) continue;
      if (!chart) {
        const node = document.createElement("div");
        node.className = "chart";
        node.dataset.metric = key;
        const title = document.createElement("h3");
        title.textContent = key;
        const note = document.createElement("div");
        note.className = "note";
        const holder = document.createElement("div");
        node.append(title, holder, note);
        container.appendChild(node);
        const width = Math.max(400, holder.clientWidth || 560);
        const plot = new uPlot({
          width, height: 280,
          scales: { x: { time: state.xMode === "wall" }, y: state.logScale ? { distr: 3 } : {} },
          axes: [{ label: state.xMode === "step" ? "step" : state.xMode === "wall" ? "" : "seconds" }, {}],
          series: [{ label: state.xMode }, ...built.series],
          legend: { live: true },
          cursor: { drag: { x: true, y: false } },
        }, built.data, holder);
        chart = { plot, node, note, signature };
        state.charts.set(key, chart);
      } else {
        chart.plot.setData(built.data);
      }
      chart.note.textContent = built.notes.join(" \u00b7 ");
    }
    state.draws += 1;
    // milliseconds from navigation to the first chart drawn (the benchmark reads it)
    if (state.firstChartMs === undefined && state.charts.size) state.firstChartMs = performance.now();
  }

  // ---- parallel coordinates ------------------------------------------------------------------
  function drawParallel() {
    const canvas = $("parallel");
    const runs = [...state.selected.keys()].map((id) => state.info.get(id)).filter(Boolean);
    const width = canvas.clientWidth || 900, height = 320;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    g.font = "12px system-ui, sans-serif";
    const metric = state.pcMetric;
    const params = [...new Set(runs.flatMap((r) => Object.keys(r.params)))].sort()
      .filter((k) => new Set(runs.map((r) => JSON.stringify(r.params[k]))).size > 1 || runs.length === 1);
    const axes = params.map((k) => ({ label: k, value: (r) => r.params[k] }));
    if (metric) axes.push({ label: `${metric} (${state.pcReduce})`, value: (r) => (r.metrics[metric] ? num(r.metrics[metric][state.pcReduce]) : undefined), metric: true });
    if (!runs.length || !axes.length) {
      g.fillStyle = "#667085";
      g.fillText("select runs with params or metrics to compare them here", 16, 24);
      return;
    }
    const left = 60, right = 60, top = 30, bottom = 30;
    const step = axes.length > 1 ? (width - left - right) / (axes.length - 1) : 0;
    const scales = axes.map((axis) => {
      const raw = runs.map(axis.value).filter((v) => v !== undefined && v !== null);
      const numbers = raw.filter((v) => typeof v === "number" && Number.isFinite(v));
      if (numbers.length === raw.length && numbers.length) {
        let lo = Math.min(...numbers), hi = Math.max(...numbers);
        if (lo === hi) { lo -= 1; hi += 1; }
        return { kind: "number", lo, hi, at: (v) => (typeof v === "number" && Number.isFinite(v) ? (v - lo) / (hi - lo) : null) };
      }
      const labels = [...new Set(raw.map((v) => fmt(v)))].sort();
      return { kind: "category", labels, at: (v) => (v === undefined || v === null ? null : (labels.indexOf(fmt(v)) + 0.5) / labels.length) };
    });
    const y = (f) => top + (1 - f) * (height - top - bottom);
    g.strokeStyle = "#98a2b3";
    g.fillStyle = "#1d232b";
    axes.forEach((axis, i) => {
      const x = left + i * step;
      g.beginPath(); g.moveTo(x, top); g.lineTo(x, height - bottom); g.stroke();
      g.textAlign = "center";
      g.fillText(axis.label, x, top - 12);
      const scale = scales[i];
      g.textAlign = i === axes.length - 1 ? "left" : "right";
      const dx = i === axes.length - 1 ? 6 : -6;
      if (scale.kind === "number") {
        g.fillText(fmt(scale.hi), x + dx, top + 4);
        g.fillText(fmt(scale.lo), x + dx, height - bottom);
      } else {
        scale.labels.forEach((label, j) => g.fillText(label, x + dx, y((j + 0.5) / scale.labels.length) + 4));
      }
    });
    g.lineWidth = 2;
    for (const run of runs) {
      const chosen = state.selected.get(run.id);
      g.strokeStyle = chosen ? chosen.color : "#667085";
      g.beginPath();
      let drawing = false;
      axes.forEach((axis, i) => {
        const f = scales[i].at(axis.value(run));
        if (f === null) { drawing = false; return; }
        const px = left + i * step, py = y(f);
        if (drawing) g.lineTo(px, py); else g.moveTo(px, py);
        drawing = true;
      });
      g.stroke();
    }
    state.parallelDraws = (state.parallelDraws || 0) + 1;
  }

  // ---- live updates ------------------------------------------------------------------------
  async function poll() {
    const ids = [...state.selected.keys()];
    let delay = POLL_IDLE_MS;
    try {
      if (state.view === "list" && state.cursor !== null && ids.length) {
        const body = await api("api/updates", { since: state.cursor, runs: ids.join(","), keys: state.shownMetrics.join(",") });
        let changed = false;
        for (const p of body.points) {
          const s = state.series.get(p.run + "\u0000" + p.key);
          if (!s) continue;
          for (let i = 0; i < p.steps.length; i++) {
            s.steps.push(p.steps[i]); s.values.push(num(p.values[i])); s.times.push(p.times[i]);
          }
          s.points += p.steps.length;
          changed = true;
        }
        for (const r of body.runs) {
          const info = state.info.get(r.id);
          if (info && info.status !== r.status) { info.status = r.status; info.ended = r.ended; changed = true; }
        }
        state.cursor = body.cursor;
        if (body.truncated) await loadSeries();
        else if (changed) drawCharts();
        if (body.run_count !== state.runCount) { state.runCount = body.run_count; loadTable(); }
        const running = body.runs.some((r) => r.status === "running");
        delay = running ? POLL_RUNNING_MS : POLL_IDLE_MS;
        $("live").classList.toggle("on", running);
      } else if (state.view === "list") {
        const running = state.rows.some((r) => r.status === "running");
        $("live").classList.toggle("on", running);
        delay = running ? POLL_RUNNING_MS : POLL_IDLE_MS;
      }
      if (state.view === "list" && Date.now() - state.lastTableLoad > TABLE_REFRESH_MS &&
          state.rows.some((r) => r.status === "running")) {
        loadTable();
      }
      state.polls += 1;
    } catch (e) {
      showError(e.message);
    }
    setTimeout(poll, delay);
  }

  // ---- the run page ------------------------------------------------------------------------
  function table(rows) {
    const t = document.createElement("table");
    for (const [k, v] of rows) {
      const tr = document.createElement("tr");
      const a = document.createElement("th"), b = document.createElement("td");
      a.textContent = k;
      b.textContent = v;
      tr.append(a, b);
      t.appendChild(tr);
    }
    return t;
  }

  async function showRun(id) {
    const view = $("run-view");
    view.textContent = "loading\u2026";
    try {
      const run = await api("api/runs/" + encodeURIComponent(id));
      view.textContent = "";
      const back = document.createElement("a");
      back.href = "#/";
      back.textContent = "\u2190 all runs";
      const h = document.createElement("h2");
      h.textContent = `${run.name} (${run.id})`;
      view.append(back, h, table([["status", run.status], ["started", when(run.created)], ["ended", when(run.ended)],
                                  ["duration", duration(run.duration)], ["process", run.pid ? `${run.pid} on ${run.host}` : ""]]));
      const section = (title) => { const s = document.createElement("h3"); s.textContent = title; view.appendChild(s); };
      section("params");
      view.appendChild(table(Object.entries(run.params).map(([k, v]) => [k, fmt(v)])));
      section("tags");
      view.appendChild(table(Object.entries(run.tags).map(([k, v]) => [k, fmt(v)])));
      section("metrics");
      const m = document.createElement("table");
      m.innerHTML = "<tr><th>metric</th><th>points</th><th>first step</th><th>last step</th><th>last</th><th>min</th><th>max</th></tr>";
      for (const [key, s] of Object.entries(run.metrics)) {
        const tr = document.createElement("tr");
        tr.dataset.metric = key;
        for (const v of [key, s.count, s.first_step, s.last_step, fmt(s.last), fmt(s.min), fmt(s.max)]) {
          const td = document.createElement("td");
          td.textContent = v;
          tr.appendChild(td);
        }
        m.appendChild(tr);
      }
      view.appendChild(m);
      section("artifacts");
      view.appendChild(table(run.artifacts.map((a) => [a.name, a.path])));
      if (run.error) {
        section("error");
        const pre = document.createElement("pre");
        pre.textContent = run.error;
        view.appendChild(pre);
      }
      state.runPage = run.id;
    } catch (e) {
      view.textContent = e.message;
    }
  }

  function route() {
    const m = location.hash.match(/^#\/run\/(.+)$/);
    state.view = m ? "run" : "list";
    $("list-view").hidden = !!m;
    $("run-view").hidden = !m;
    if (m) showRun(decodeURIComponent(m[1]));
  }

  // ---- wiring ----------------------------------------------------------------------------
  function bind() {
    let timer = null;
    $("filter").addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { state.filter = $("filter").value.trim(); state.offset = 0; loadTable(); }, 250);
    });
    $("filter").addEventListener("keydown", (e) => {
      if (e.key === "Enter") { clearTimeout(timer); state.filter = $("filter").value.trim(); state.offset = 0; loadTable(); }
    });
    $("page-size").addEventListener("change", () => { state.limit = Number($("page-size").value); state.offset = 0; loadTable(); });
    $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); loadTable(); });
    $("next").addEventListener("click", () => { state.offset += state.limit; loadTable(); });
    $("x-mode").addEventListener("change", () => { state.xMode = $("x-mode").value; drawCharts(); });
    $("smoothing").addEventListener("input", () => {
      state.smoothing = Number($("smoothing").value);
      $("smoothing-value").textContent = state.smoothing.toFixed(2);
      drawCharts();
    });
    $("log-scale").addEventListener("change", () => { state.logScale = $("log-scale").checked; drawCharts(); });
    $("clear").addEventListener("click", () => { state.selected.clear(); renderTable(); refreshCompare(); });
    $("pc-metric").addEventListener("change", () => { state.pcMetric = $("pc-metric").value; drawParallel(); });
    $("pc-reduce").addEventListener("change", () => { state.pcReduce = $("pc-reduce").value; drawParallel(); });
    window.addEventListener("hashchange", route);
    window.addEventListener("resize", () => {
      for (const chart of state.charts.values()) chart.plot.setSize({ width: chart.node.clientWidth, height: 280 });
      drawParallel();
    });
  }

  async function start() {
    takeToken();
    bind();
    try {
      state.keys = await api("api/keys");
      state.runCount = state.keys.runs;
    } catch (e) {
      showError(e.message);
    }
    const saved = JSON.parse(localStorage.getItem("weft-columns") || "null");
    state.columns = Array.isArray(saved) && saved.length ? saved : defaultColumns();
    renderColumnPicker();
    route();
    const chosen = (new URLSearchParams(location.search).get("select") || "").split(",").filter(Boolean);
    const metric = new URLSearchParams(location.search).get("metric");
    if (chosen.length) {
      if (metric) state.shownMetrics = [metric];
      const [page] = await Promise.all([api("api/runs", { ids: chosen.join(","), limit: chosen.length }), loadTable()]);
      for (const run of page.runs) state.info.set(run.id, run);
      await window.weftUI.select(chosen);
    } else {
      await loadTable();
    }
    state.ready = true;
    poll();
  }

  window.weftUI = {
    state,
    select(ids) {
      for (const id of ids) {
        const run = state.info.get(id);
        if (run && !state.selected.has(id)) state.selected.set(id, { id, name: run.name, color: nextColor() });
      }
      renderTable();
      return refreshCompare();
    },
    lastStep(run, key) {
      const s = state.series.get(run + "\u0000" + key);
      if (!s || !s.steps.length) return null;
      let most = -Infinity;
      for (const step of s.steps) if (step > most) most = step;
      return most;
    },
  };
  start();
})();
