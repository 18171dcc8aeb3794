// CarDreamer visualizer page: run list, live frames and step info, dream, training curves, episodes.
// Talks to the server's /view Socket.IO namespace. Every frame and step message is acknowledged with
// an 'ack' event once handled; the server sends the next item of that stream only after the ack.
(() => {
  "use strict";

  const params = new URLSearchParams(location.search);
  const token = params.get("token") || "";
  const $ = (id) => document.getElementById(id);
  const STREAM_ORDER = ["camera", "birdeye", "lidar", "spectator"];
  const PALETTE = ["#5cc8ff", "#fbbf24", "#4ade80", "#f87171", "#c084fc", "#f472b6", "#2dd4bf", "#a3e635"];

  const state = {
    runs: [],
    run: params.get("run") || null,
    env: 0, // selected env index
    hiddenStreams: new Set(),
    streamsByEnv: {}, // env -> [stream]
    live: false,
    interactive: false,
  };
  // Exposed for tests and curious users: frames drawn per slot, last latency, chart points.
  const stats = (window.visStats = { frames: {}, latencyMs: {}, chartPoints: 0, episodes: 0 });

  // ---------------------------------------------------------------- connection
  const socket = io("/view", { auth: { token }, transports: ["websocket"] });
  const conn = $("conn");
  const setConn = (cls, text) => { conn.className = "conn " + cls; $("conn-text").textContent = text; };
  socket.on("connect", () => { setConn("ok", "connected"); if (state.run) joinRun(state.run); });
  socket.on("disconnect", (reason, detail) => { console.info("visualizer disconnected:", reason, String(detail && (detail.message || detail))); setConn("", "disconnected — retrying…"); });
  socket.on("connect_error", (err) => {
    const msg = err && err.message ? err.message : "cannot reach the server";
    setConn("error", msg.includes("token") ? "this server needs the token from its URL (…/?token=…)" : msg);
  });

  socket.on("problem", (msg) => console.warn("visualization server:", msg.message));

  // ---------------------------------------------------------------- runs
  socket.on("runs", (msg) => {
    state.runs = msg.runs;
    if (!state.run && state.runs.length) {
      const live = state.runs.find((r) => r.live);
      selectRun((live || state.runs[0]).name);
    } else {
      renderRuns();
      updateRunInfo();
    }
  });

  function ago(seconds) {
    if (!seconds) return "";
    const d = Date.now() / 1000 - seconds;
    if (d < 60) return "just now";
    if (d < 3600) return Math.round(d / 60) + " min ago";
    if (d < 86400) return Math.round(d / 3600) + " h ago";
    return Math.round(d / 86400) + " d ago";
  }

  function renderRuns() {
    const list = $("run-list");
    list.replaceChildren();
    if (!state.runs.length) {
      const li = document.createElement("li");
      li.className = "run-empty";
      li.textContent = "No runs yet.";
      list.append(li);
    }
    for (const run of state.runs) {
      const li = document.createElement("li");
      li.className = run.name === state.run ? "selected" : "";
      const envs = Object.keys(run.envs).length;
      li.innerHTML = `<div class="run-name"><span class="live-dot ${run.live ? "on" : ""}"></span>
        <span></span>${run.interactive ? '<span class="badge">drive</span>' : ""}</div>
        <div class="run-meta">${run.live ? "live" : "idle"}${envs ? ` · ${envs} env${envs > 1 ? "s" : ""}` : ""}
        ${run.last_update ? " · " + ago(run.last_update) : ""}</div>`;
      li.querySelector(".run-name span:nth-child(2)").textContent = run.name;
      li.onclick = () => selectRun(run.name);
      list.append(li);
    }
    $("welcome").hidden = state.runs.length > 0 || !!state.run;
    $("run-view").hidden = !state.run;
  }

  function selectRun(name) {
    if (name !== state.run) {
      state.run = name;
      state.env = 0;
      resetRunView();
      const url = new URL(location.href);
      url.searchParams.set("run", name);
      history.replaceState(null, "", url);
    }
    renderRuns();
    updateRunInfo();
    if (socket.connected) joinRun(name);
  }

  function joinRun(name) {
    socket.emit("join", { run: name });
    sendWatch();
  }

  function currentRun() { return state.runs.find((r) => r.name === state.run) || null; }

  function updateRunInfo() {
    const run = currentRun();
    $("topbar-run").textContent = state.run || "";
    document.title = state.run ? `${state.run} · CarDreamer visualizer` : "CarDreamer visualizer";
    state.live = !!(run && run.live);
    state.interactive = !!(run && run.interactive);
    state.streamsByEnv = {};
    for (const [env, streams] of Object.entries(run ? run.envs : {})) state.streamsByEnv[+env] = streams;
    const envs = Object.keys(state.streamsByEnv).map(Number);
    if (envs.length && !envs.includes(state.env)) state.env = envs[0];
    renderEnvTabs(envs);
    renderStreamChips();
    renderPanels();
    if (state.run && socket.connected) sendWatchIfChanged();
    $("drive-card").hidden = !state.interactive;
    $("record-btn").disabled = !envs.length;
    const empty = $("live-empty");
    if (!run || (!run.live && !envs.length)) {
      empty.hidden = false;
      empty.innerHTML = `<b>Nothing is streaming for this run.</b> Live video and step info appear while a
        trainer, env or <code>cardreamer drive</code> publishes run <code></code> to this server.
        The history below comes from the run directory.`;
      empty.querySelector("code:nth-of-type(2)").textContent = state.run || "";
    } else if (!envs.length) {
      empty.hidden = false;
      empty.textContent = "Publisher connected — waiting for the first frame…";
    } else {
      empty.hidden = true;
    }
  }

  // ---------------------------------------------------------------- envs, streams, panels
  function renderEnvTabs(envs) {
    const tabs = $("env-tabs");
    tabs.replaceChildren();
    if (envs.length <= 1) return;
    for (const env of envs) {
      const b = document.createElement("button");
      b.className = "tab" + (env === state.env ? " active" : "");
      b.textContent = "env " + env;
      b.onclick = () => { state.env = env; updateRunInfo(); sendWatch(); renderStep(); };
      tabs.append(b);
    }
  }

  function sortedStreams(streams) {
    const rank = (s) => {
      const i = STREAM_ORDER.findIndex((p) => s.startsWith(p));
      return i < 0 ? STREAM_ORDER.length : i;
    };
    return [...streams].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  }

  function envStreams() { return sortedStreams(state.streamsByEnv[state.env] || []); }

  function renderStreamChips() {
    const chips = $("stream-chips");
    chips.replaceChildren();
    for (const stream of envStreams()) {
      const b = document.createElement("button");
      b.className = "chip" + (state.hiddenStreams.has(stream) ? "" : " on");
      b.textContent = stream;
      b.onclick = () => {
        if (state.hiddenStreams.has(stream)) state.hiddenStreams.delete(stream); else state.hiddenStreams.add(stream);
        renderStreamChips(); renderPanels(); sendWatch();
      };
      chips.append(b);
    }
  }

  // Tell the server which env and streams to send; null streams (none known yet) means all.
  let lastWatch = "";
  function currentWatch() {
    const known = envStreams();
    return { envs: [state.env], streams: known.length ? known.filter((s) => !state.hiddenStreams.has(s)) : null };
  }
  function sendWatch() {
    if (!state.run) return;
    const watch = currentWatch();
    lastWatch = JSON.stringify(watch);
    socket.emit("watch", watch);
  }
  function sendWatchIfChanged() {
    if (JSON.stringify(currentWatch()) !== lastWatch) sendWatch();
  }

  const panels = new Map(); // "env/stream" -> {root, canvas, statsEl, times[]}

  function renderPanels() {
    const wanted = envStreams().filter((s) => !state.hiddenStreams.has(s)).map((s) => `${state.env}/${s}`);
    for (const [key, panel] of panels) {
      if (!wanted.includes(key)) { panel.root.remove(); panels.delete(key); }
    }
    const container = $("panels");
    container.style.setProperty("--panels", Math.max(1, Math.min(wanted.length, 4)));
    for (const key of wanted) {
      if (panels.has(key)) { container.append(panels.get(key).root); continue; }
      const root = document.createElement("div");
      root.className = "panel";
      root.dataset.key = key;
      root.innerHTML = `<div class="panel-head"><span class="name"></span><span class="stats">waiting…</span></div>
        <canvas width="256" height="256"></canvas>`;
      root.querySelector(".name").textContent = key.split("/")[1];
      container.append(root);
      panels.set(key, { root, canvas: root.querySelector("canvas"), statsEl: root.querySelector(".stats"), times: [] });
    }
  }

  function resetRunView() {
    for (const panel of panels.values()) panel.root.remove();
    panels.clear();
    lastStep = {};
    renderStep();
    resetCharts();
    resetEpisodes();
    resetDream();
    $("record-status").hidden = true;
  }

  socket.on("frame", async (msg) => {
    try {
      if (msg.run !== state.run) return;
      const panel = panels.get(msg.key);
      if (!panel) return;
      const bitmap = await createImageBitmap(new Blob([msg.data], { type: "image/" + msg.fmt }));
      const c = panel.canvas;
      if (c.width !== bitmap.width || c.height !== bitmap.height) {
        c.width = bitmap.width; c.height = bitmap.height;
        c.style.aspectRatio = `${bitmap.width} / ${bitmap.height}`;
      }
      c.getContext("2d").drawImage(bitmap, 0, 0);
      bitmap.close();
      const now = performance.now();
      panel.times.push(now);
      while (panel.times.length && now - panel.times[0] > 2000) panel.times.shift();
      const latency = Math.max(0, Date.now() - msg.t * 1000);
      stats.frames[msg.key] = (stats.frames[msg.key] || 0) + 1;
      stats.latencyMs[msg.key] = latency;
      panel.lastDrawn = now;
      panel.latency = latency;
    } finally {
      socket.emit("ack", { key: msg.key });
    }
  });

  // Refresh the fps/latency labels and mark panels whose stream went quiet.
  setInterval(() => {
    const now = performance.now();
    for (const panel of panels.values()) {
      if (!panel.lastDrawn) continue;
      const fps = panel.times.length > 1 ? (panel.times.length - 1) / ((now - panel.times[0]) / 1000) : 0;
      const quiet = now - panel.lastDrawn > 3000;
      panel.root.classList.toggle("stale", quiet);
      panel.statsEl.textContent = quiet ? "paused" : `${fps.toFixed(0)} fps · ${panel.latency.toFixed(0)} ms`;
    }
  }, 500);

  // ---------------------------------------------------------------- step info
  let lastStep = {}; // env -> info
  socket.on("step", (msg) => {
    if (msg.run === state.run) {
      lastStep[msg.env] = msg.info;
      if (msg.env === state.env) renderStep();
    }
    socket.emit("ack", { key: msg.key });
  });

  const fmt = (v, digits = 2) => {
    if (v == null) return "—";
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) || Math.abs(v) >= 1000 ? v.toFixed(0) : v.toFixed(digits);
  };

  function renderStep() {
    const info = lastStep[state.env] || {};
    $("step-env").textContent = Object.keys(lastStep).length ? `env ${state.env}` : "no data yet";
    $("speed").textContent = fmt(info.speed, 1);
    $("reward").textContent = fmt(info.reward, 3);
    $("terminal").textContent = info.terminal_reason || "—";
    const terms = Object.entries(info).filter(([k, v]) => k.startsWith("r_") && typeof v === "number");
    const scale = Math.max(1e-6, ...terms.map(([, v]) => Math.abs(v)));
    const box = $("terms");
    box.replaceChildren();
    for (const [name, value] of terms) {
      const row = document.createElement("div");
      row.className = "term";
      const width = (50 * Math.abs(value)) / scale;
      row.innerHTML = `<span class="name"></span><div class="bar"><span class="${value >= 0 ? "pos" : "neg"}"
        style="width:${width}%"></span></div><span class="value">${fmt(value, 3)}</span>`;
      row.querySelector(".name").textContent = name.slice(2);
      row.title = name;
      box.append(row);
    }
    const extra = $("extra-info");
    extra.replaceChildren();
    const skip = new Set(["speed", "reward", "terminal_reason"]);
    for (const [k, v] of Object.entries(info)) {
      if (skip.has(k) || k.startsWith("r_") || (typeof v !== "number" && typeof v !== "string" && typeof v !== "boolean")) continue;
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = fmt(v);
      extra.append(dt, dd);
    }
  }

  // ---------------------------------------------------------------- dream
  const dream = { frames: null, index: 0, timer: null };
  function resetDream() {
    clearInterval(dream.timer);
    dream.frames = null;
    $("dream-view").hidden = true;
    $("dream-empty").hidden = false;
    $("dream-label").textContent = "";
  }
  // Per-pixel prediction error, mean absolute difference over RGB, shown as a heat map.
  function drawError(realCtx, imaginedCtx, errorCtx) {
    const { width, height } = realCtx.canvas;
    const a = realCtx.getImageData(0, 0, width, height).data;
    const b = imaginedCtx.getImageData(0, 0, width, height).data;
    const out = errorCtx.createImageData(width, height);
    for (let p = 0; p < a.length; p += 4) {
      const e = Math.min(1, (Math.abs(a[p] - b[p]) + Math.abs(a[p + 1] - b[p + 1]) + Math.abs(a[p + 2] - b[p + 2])) / 255);
      out.data[p] = 255 * Math.min(1, 2 * e);
      out.data[p + 1] = 255 * Math.max(0, 2 * e - 1) + 40 * (1 - e);
      out.data[p + 2] = 60 * (1 - e);
      out.data[p + 3] = 255;
    }
    errorCtx.putImageData(out, 0, 0);
  }

  socket.on("dream", async (msg) => {
    if (msg.run !== state.run) return;
    // Each sequence is one buffer of concatenated images; *_sizes gives their lengths.
    const decode = (buffer, sizes) => {
      let offset = 0;
      return Promise.all(sizes.map((size) => {
        const part = buffer.slice(offset, (offset += size));
        return createImageBitmap(new Blob([part], { type: "image/" + msg.fmt }));
      }));
    };
    const [real, imagined] = await Promise.all([decode(msg.real, msg.real_sizes), decode(msg.imagined, msg.imagined_sizes)]);
    clearInterval(dream.timer);
    dream.frames = { real, imagined, step: msg.step };
    dream.index = 0;
    $("dream-view").hidden = false;
    $("dream-empty").hidden = true;
    for (const id of ["dream-real", "dream-imagined", "dream-error"]) {
      $(id).width = real[0].width; $(id).height = real[0].height;
    }
    const draw = () => {
      const { real, imagined, step } = dream.frames;
      const i = dream.index % real.length;
      const realCtx = $("dream-real").getContext("2d", { willReadFrequently: true });
      const imaginedCtx = $("dream-imagined").getContext("2d", { willReadFrequently: true });
      realCtx.drawImage(real[i], 0, 0);
      imaginedCtx.drawImage(imagined[i], 0, 0);
      drawError(realCtx, imaginedCtx, $("dream-error").getContext("2d"));
      $("dream-label").textContent = `frame ${i + 1}/${real.length}` + (step != null ? ` · step ${step}` : "");
      dream.index += 1;
    };
    draw();
    dream.timer = setInterval(draw, 125);
  });

  // ---------------------------------------------------------------- training curves
  // Metric keys are grouped into one chart per prefix: "train/loss/image" and "train/loss/reward"
  // share the chart "train/loss". Episode return and success rate get charts of their own.
  const charts = new Map(); // title -> {card, plot, series:[key], points: Map(step -> {key: value})}
  let chartsDirty = new Set();

  function resetCharts() {
    for (const chart of charts.values()) { chart.plot && chart.plot.destroy(); chart.card.remove(); }
    charts.clear();
    chartsDirty = new Set();
    stats.chartPoints = 0;
    updateCurvesEmpty();
  }

  function chartRank(title) {
    const order = ["episode/return", "episode/success", "return", "score", "success", "loss", "fps"];
    const i = order.findIndex((p) => title.includes(p));
    return i < 0 ? order.length : i;
  }

  function chartFor(title) {
    let chart = charts.get(title);
    if (chart) return chart;
    const card = document.createElement("div");
    card.className = "card chart-card";
    card.innerHTML = '<div class="card-title"></div><div class="plot"></div>';
    card.querySelector(".card-title").textContent = title;
    chart = { card, plot: null, series: [], points: new Map(), title };
    charts.set(title, chart);
    const container = $("charts");
    const ordered = [...charts.values()].sort((a, b) => chartRank(a.title) - chartRank(b.title) || a.title.localeCompare(b.title));
    for (const c of ordered) container.append(c.card);
    return chart;
  }

  function addPoint(title, step, key, value) {
    if (typeof value !== "number" || !isFinite(value)) return;
    const chart = chartFor(title);
    if (!chart.series.includes(key)) { chart.series.push(key); if (chart.plot) { chart.plot.destroy(); chart.plot = null; } }
    let row = chart.points.get(step);
    if (!row) { row = {}; chart.points.set(step, row); }
    row[key] = value;
    chartsDirty.add(title);
  }

  function addMetrics(records) {
    for (const record of records) {
      for (const [key, value] of Object.entries(record)) {
        if (key === "step") continue;
        const slash = key.lastIndexOf("/");
        addPoint(slash > 0 ? key.slice(0, slash) : key, record.step, slash > 0 ? key.slice(slash + 1) : key, value);
      }
    }
    updateCurvesEmpty();
  }

  function updateCurvesEmpty() {
    const empty = $("curves-empty");
    empty.hidden = charts.size > 0;
    empty.innerHTML = `No training metrics yet. They are read from <code></code> and updated live while a
      trainer publishes to this server.`;
    empty.querySelector("code").textContent = `${document.body.dataset.logdir}/${state.run || "<run>"}/metrics.jsonl`;
  }

  function plotOptions(chart, width) {
    const axis = { stroke: "#8c96a8", grid: { stroke: "#232a36", width: 1 }, ticks: { stroke: "#283040", width: 1 } };
    return {
      width, height: 190,
      scales: { x: { time: false } },
      axes: [{ ...axis }, { ...axis, size: 56 }],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      series: [{ label: "step" }, ...chart.series.map((key, i) => ({
        label: key, stroke: PALETTE[i % PALETTE.length], width: 1.6, spanGaps: true, points: { show: false },
      }))],
    };
  }

  function redrawCharts() {
    for (const title of chartsDirty) {
      const chart = charts.get(title);
      if (!chart) continue;
      const steps = [...chart.points.keys()].sort((a, b) => a - b);
      const data = [steps, ...chart.series.map((key) => steps.map((s) => chart.points.get(s)[key] ?? null))];
      const width = Math.max(200, chart.card.clientWidth - 24);
      if (!chart.plot) chart.plot = new uPlot(plotOptions(chart, width), data, chart.card.querySelector(".plot"));
      else chart.plot.setData(data);
    }
    chartsDirty.clear();
    let points = 0;
    for (const chart of charts.values()) points += chart.points.size;
    stats.chartPoints = points;
  }
  setInterval(() => { if (chartsDirty.size) redrawCharts(); }, 250);
  new ResizeObserver(() => {
    for (const chart of charts.values()) {
      if (chart.plot) chart.plot.setSize({ width: Math.max(200, chart.card.clientWidth - 24), height: 190 });
    }
  }).observe($("charts"));

  // ---------------------------------------------------------------- episodes
  const episodes = [];
  const pick = (record, keys) => { for (const k of keys) if (record[k] != null) return record[k]; return null; };
  const RETURN_KEYS = ["return", "score", "episode/score", "episode/return"];
  const LENGTH_KEYS = ["length", "episode/length"];
  const SUCCESS_KEYS = ["success", "episode/success"];
  const COLLISION_KEYS = ["collision", "episode/collision"];

  function resetEpisodes() { episodes.length = 0; stats.episodes = 0; renderEpisodes(); }

  function addEpisodes(records) {
    for (const record of records) {
      episodes.push(record);
      const step = record.step ?? episodes.length;
      addPoint("episode/return", step, "return", pick(record, RETURN_KEYS));
      const recent = episodes.slice(-20).map((e) => pick(e, SUCCESS_KEYS)).filter((v) => v != null);
      if (recent.length) addPoint("episode/success rate (last 20)", step, "success", recent.reduce((a, b) => a + Number(b), 0) / recent.length);
    }
    stats.episodes = episodes.length;
    renderEpisodes();
    updateCurvesEmpty();
  }

  function cell(value, kind) {
    const td = document.createElement("td");
    if (kind === "bool") {
      td.textContent = value == null ? "—" : value ? "✓" : "·";
      td.className = value ? "yes" : "no";
    } else if (kind === "hit") {
      td.textContent = value == null ? "—" : value ? "✗" : "·";
      td.className = value ? "hit" : "no";
    } else {
      td.textContent = fmt(value, 2);
    }
    return td;
  }

  function renderEpisodes() {
    const has = episodes.length > 0;
    $("episodes-card").hidden = !has;
    const empty = $("episodes-empty");
    empty.hidden = has;
    empty.innerHTML = "No finished episodes yet. They come from <code></code> and from live publishers.";
    empty.querySelector("code").textContent = `${state.run || "<run>"}/scores.jsonl`;
    const rows = $("episode-rows");
    rows.replaceChildren();
    for (const e of episodes.slice(-200).reverse()) {
      const tr = document.createElement("tr");
      tr.append(cell(e.step), cell(e.env), cell(pick(e, RETURN_KEYS)), cell(pick(e, LENGTH_KEYS)),
        cell(pick(e, SUCCESS_KEYS), "bool"), cell(pick(e, COLLISION_KEYS), "hit"), cell(e.terminal_reason ?? "—"));
      rows.append(tr);
    }
    const last = episodes.slice(-100);
    const successes = last.map((e) => pick(e, SUCCESS_KEYS)).filter((v) => v != null);
    const returns = last.map((e) => pick(e, RETURN_KEYS)).filter((v) => typeof v === "number");
    const parts = [`${episodes.length} episode${episodes.length === 1 ? "" : "s"}`];
    if (returns.length) parts.push(`mean return ${fmt(returns.reduce((a, b) => a + b, 0) / returns.length)} (last ${returns.length})`);
    if (successes.length) parts.push(`success ${(100 * successes.filter(Boolean).length / successes.length).toFixed(0)}%`);
    $("episode-summary").textContent = has ? parts.join(" · ") : "";
  }

  socket.on("history", (msg) => {
    if (msg.run !== state.run) return;
    resetCharts();
    resetEpisodes();
    addMetrics(msg.metrics);
    addEpisodes(msg.episodes);
    $("metrics-summary").textContent = msg.metrics.length ? `${msg.metrics.length} logged steps` : "";
  });
  socket.on("metrics", (msg) => { if (msg.run === state.run) addMetrics(msg.records); });
  socket.on("episodes", (msg) => { if (msg.run === state.run) addEpisodes(msg.records); });

  // ---------------------------------------------------------------- recording
  $("record-btn").onclick = () => {
    if (!state.run) return;
    socket.emit("record", { run: state.run, env: state.env });
    const status = $("record-status");
    status.hidden = false; status.className = "record-status"; status.textContent = "Saving episode…";
  };
  socket.on("recorded", (msg) => {
    const status = $("record-status");
    status.hidden = false;
    status.className = "record-status " + (msg.ok ? "ok" : "error");
    status.textContent = msg.ok ? "Saved " + msg.files.join(", ") : "Could not save: " + msg.error;
  });

  // ---------------------------------------------------------------- keyboard driving
  const KEYMAP = { ArrowUp: "up", KeyW: "up", ArrowDown: "down", KeyS: "down", ArrowLeft: "left", KeyA: "left",
                   ArrowRight: "right", KeyD: "right" };
  const held = { up: false, down: false, left: false, right: false };
  function sendControl(reset = false) {
    if (!state.interactive || !state.run) return;
    socket.emit("control", { run: state.run, env: state.env, keys: held, reset });
    for (const k of Object.keys(held)) document.querySelector(`kbd[data-key="${k}"]`).classList.toggle("down", held[k]);
  }
  function onKey(event, down) {
    if (!state.interactive || event.target.closest("input, textarea, select")) return;
    if (event.code === "KeyR" && down) { sendControl(true); return; }
    const key = KEYMAP[event.code];
    if (!key) return;
    event.preventDefault();
    if (held[key] !== down) { held[key] = down; sendControl(); }
  }
  addEventListener("keydown", (e) => onKey(e, true));
  addEventListener("keyup", (e) => onKey(e, false));
  addEventListener("blur", () => { for (const k of Object.keys(held)) held[k] = false; sendControl(); });
  setInterval(() => { if (state.interactive && document.hasFocus()) sendControl(); }, 250);

  renderRuns();
  renderStep();
  updateCurvesEmpty();
  renderEpisodes();
})();
