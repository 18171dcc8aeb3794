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
    status: null, // the trainer's newest run status (phase, counters, rates)
  };
  // Exposed for tests and curious users: frames received and drawn per slot, the last latency, the
  // newest drawn frames as [drawn at, published at] (ms since the epoch), chart points.
  const RECENT_FRAMES = 32;
  const stats = (window.visStats = { received: {}, frames: {}, latencyMs: {}, recent: {}, chartPoints: 0, episodes: 0 });

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
    setTimeout(refreshOverlays);
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

  // The run list: click a run to open it; tick others (or a group of seeds) to overlay their curves.
  function runItem(run, depthName) {
    const li = document.createElement("li");
    li.className = "run" + (run.name === state.run ? " selected" : "");
    li.dataset.run = run.name;
    const envs = Object.keys(run.envs).length;
    li.innerHTML = `<input type="checkbox" class="compare" title="overlay this run's curves">
      <div class="run-body"><div class="run-name"><span class="live-dot ${run.live ? "on" : ""}"></span>
        <span class="run-label"></span>${run.interactive ? '<span class="badge">drive</span>' : ""}</div>
      <div class="run-meta">${run.live ? "live" : "idle"}${envs ? ` · ${envs} env${envs > 1 ? "s" : ""}` : ""}
        ${run.live && run.phase ? " · " + run.phase : run.last_update ? " · " + ago(run.last_update) : ""}</div></div>`;
    li.querySelector(".run-label").textContent = depthName;
    li.title = run.name;
    const box = li.querySelector(".compare");
    const selected = run.name === state.run;
    box.checked = selected || compare.runs.has(run.name);
    box.disabled = selected;
    box.onclick = (e) => { e.stopPropagation(); toggleCompare(compare.runs, run.name, box.checked); };
    li.onclick = () => selectRun(run.name);
    return li;
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
    const groups = runGroups();
    const grouped = new Set();
    for (const group of groups) {
      const members = groupMembers(group);
      const head = document.createElement("li");
      head.className = "group";
      head.dataset.group = group;
      head.innerHTML = `<label title="overlay the mean ± standard deviation of these runs"><input type="checkbox"
        class="compare-group"> <span class="group-label"></span> <span class="muted">${members.length} runs · mean ± sd</span></label>`;
      head.querySelector(".group-label").textContent = group;
      const box = head.querySelector("input");
      box.checked = compare.groups.has(group);
      box.onchange = () => toggleCompare(compare.groups, group, box.checked);
      list.append(head);
      for (const name of members) {
        grouped.add(name);
        const li = runItem(state.runs.find((r) => r.name === name), name.slice(group.length + 1));
        li.classList.add("member");
        list.append(li);
      }
    }
    for (const run of state.runs) if (!grouped.has(run.name)) list.append(runItem(run, run.name));
    $("welcome").hidden = state.runs.length > 0 || !!state.run;
    $("run-view").hidden = !state.run;
  }

  function selectRun(name) {
    if (name !== state.run) {
      if (!overlaidRuns().includes(state.run)) runData.delete(state.run);
      fetched.delete(name);
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
    renderStatus();
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

  // ---------------------------------------------------------------- run status (the trainer's phase)
  const BUSY_PHASES = new Set(["compiling", "reporting", "evaluating", "saving", "filling", "pretraining"]);

  function clock(seconds) {
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return h ? `${h}:${String(m).padStart(2, "0")}:${String(r).padStart(2, "0")}` : `${m}:${String(r).padStart(2, "0")}`;
  }

  function duration(seconds) {
    if (seconds < 60) return Math.round(seconds) + " s";
    if (seconds < 3600) return Math.round(seconds / 60) + " min";
    return Math.floor(seconds / 3600) + " h " + Math.round((seconds % 3600) / 60) + " min";
  }

  const count = (n) => n >= 1e6 ? (n / 1e6).toFixed(2) + "M" : n >= 1e4 ? (n / 1e3).toFixed(1) + "k" : String(n);

  // Shown while the run's trainer is connected; the phase's clock runs here, so a phase that blocks
  // the trainer (the first jit takes minutes on a CPU) keeps counting instead of looking frozen.
  function renderStatus() {
    const run = currentRun(), s = state.status, bar = $("run-status");
    if (!s || !run || !run.live) { bar.hidden = true; return; }
    bar.hidden = false;
    const busy = BUSY_PHASES.has(s.phase);
    const phase = $("run-phase");
    phase.className = "phase" + (busy ? " busy" : "");
    phase.textContent = (busy ? s.label + "… " + clock(Date.now() / 1000 - s.since) : s.label)
      + (s.detail ? " · " + s.detail : "");
    const parts = [`${count(s.env_steps)} / ${count(s.steps)} env steps`, `${count(s.updates)} updates`];
    if (s.fps) parts.push(`${s.fps.toFixed(1)} env steps/s`);
    if (s.ups) parts.push(`${s.ups.toFixed(2)} updates/s`);
    if (s.eta != null && s.phase !== "done") parts.push("ETA " + duration(s.eta));
    $("run-status-text").textContent = parts.join(" · ");
    $("run-progress").style.width = (s.steps ? Math.min(100, 100 * s.env_steps / s.steps) : 0) + "%";
  }
  setInterval(renderStatus, 1000);

  socket.on("status", (msg) => {
    if (msg.run !== state.run) return;
    state.status = msg;
    renderStatus();
  });

  function resetRunView() {
    state.status = null;
    renderStatus();
    for (const panel of panels.values()) panel.root.remove();
    panels.clear();
    lastStep = {};
    renderStep();
    resetCharts();
    resetEpisodes();
    resetDream();
    logLines = [];
    renderLog();
    $("record-status").hidden = true;
  }

  socket.on("frame", async (msg) => {
    try {
      if (msg.run !== state.run) return;
      stats.received[msg.key] = (stats.received[msg.key] || 0) + 1;
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
      const drawnAt = Date.now(), latency = Math.max(0, drawnAt - msg.t * 1000);
      stats.frames[msg.key] = (stats.frames[msg.key] || 0) + 1;
      stats.latencyMs[msg.key] = latency;
      const recent = (stats.recent[msg.key] ||= []);
      recent.push([drawnAt, msg.t * 1000]);
      if (recent.length > RECENT_FRAMES) recent.shift();
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
  // The open-loop sequence as aligned strips, one frame per column: real, imagined, error. Each
  // frame may stack several replay samples vertically (`rows`); one sample is shown at a time.
  const dream = { frames: null, sample: 0 };
  function resetDream() {
    dream.frames = null;
    dreamEpisodes = [];
    $("dream-view").hidden = true;
    $("dream-empty").hidden = false;
    $("dream-label").textContent = "";
  }

  // Mean absolute RGB difference as a heat map (dark: no error, yellow: large).
  function errorImage(a, b, out) {
    for (let p = 0; p < a.length; p += 4) {
      const e = Math.min(1, (Math.abs(a[p] - b[p]) + Math.abs(a[p + 1] - b[p + 1]) + Math.abs(a[p + 2] - b[p + 2])) / 255);
      out[p] = 255 * Math.min(1, 2 * e);
      out[p + 1] = 255 * Math.max(0, 2 * e - 1) + 40 * (1 - e);
      out[p + 2] = 60 * (1 - e);
      out[p + 3] = 255;
    }
  }

  // Where a replay sample came from (publish_dream's samples): env, episode(s) and steps.
  const num = (n) => n.toLocaleString("en-US");
  function originText(origin) {
    if (!origin) return "";
    const parts = [];
    if (origin.env != null) parts.push(`env ${origin.env}`);
    const episodes = origin.episodes || [];
    const span = (e) => `${num(e.steps[0])}–${num(e.steps[1])}`;
    if (episodes.length === 1) parts.push(`episode #${episodes[0].number}, its steps ${span(episodes[0])}`);
    else if (episodes.length) parts.push("episodes " + episodes.map((e, i) => `#${e.number} (${i ? "" : "steps "}${span(e)})`).join(", "));
    if (origin.env_steps) parts.push(`collected at env steps ${num(origin.env_steps[0])}–${num(origin.env_steps[1])}`);
    return parts.join(" · ");
  }

  function drawDream() {
    const { real, imagined, rows, context, step, samples } = dream.frames;
    const w = real[0].width, h = real[0].height / rows, n = real.length;
    const sample = Math.min(dream.sample, rows - 1);
    const strips = { real: $("dream-real"), imagined: $("dream-imagined"), error: $("dream-error") };
    for (const c of Object.values(strips)) { c.width = n * w; c.height = h; }
    const ctx = (c) => c.getContext("2d", { willReadFrequently: true });
    real.forEach((frame, t) => {
      ctx(strips.real).drawImage(frame, 0, sample * h, w, h, t * w, 0, w, h);
      ctx(strips.imagined).drawImage(imagined[t], 0, sample * h, w, h, t * w, 0, w, h);
    });
    const a = ctx(strips.real).getImageData(0, 0, n * w, h).data;
    const b = ctx(strips.imagined).getImageData(0, 0, n * w, h).data;
    const err = ctx(strips.error).createImageData(n * w, h);
    errorImage(a, b, err.data);
    ctx(strips.error).putImageData(err, 0, 0);
    // Columns at least 40 px and at most 4x the image: small images scale up without blur.
    const box = $("dream-strips");
    const col = Math.max(40, Math.min(4 * w, (box.clientWidth - 80) / n));
    box.style.setProperty("--strip-width", `${Math.round(col * n)}px`);
    box.style.setProperty("--strip-height", `${(Math.round(col * n) * h) / (n * w)}px`);
    box.style.setProperty("--context", context == null ? 0 : Math.min(context, n) / n);
    box.classList.toggle("has-context", context != null && context > 0);
    $("dream-context-label").textContent = context ? `observed ${context} · imagined ${n - context}` : "";
    $("dream-label").textContent = `${n} frames of ${w}×${h}` + (step != null ? ` · step ${step.toLocaleString("en-US")}` : "");
    const tabs = $("dream-samples");
    tabs.replaceChildren();
    for (let r = 0; rows > 1 && r < rows; r++) {
      const btn = document.createElement("button");
      btn.className = "tab" + (r === sample ? " active" : "");
      btn.textContent = `sample ${r + 1}`;
      const origin = samples && samples[r];
      if (origin && origin.env != null && origin.episodes && origin.episodes.length)
        btn.title = `env ${origin.env} · episode #${origin.episodes[0].number}`;
      btn.onclick = () => { dream.sample = r; drawDream(); };
      tabs.append(btn);
    }
    const origin = $("dream-origin");
    origin.textContent = originText(samples && samples[sample]);
    origin.hidden = !origin.textContent;
    origin.classList.remove("linked");
    const numbers = ((samples && samples[sample] && samples[sample].episodes) || []).map((e) => e.number);
    markDreamEpisodes(numbers);
  }

  // The Episodes table's rows of the episodes the shown dream sample replays (once they ended).
  let dreamEpisodes = [];
  function markDreamEpisodes(numbers) {
    dreamEpisodes = numbers;
    for (const tr of $("episode-rows").children) tr.classList.toggle("dreamed", numbers.includes(Number(tr.dataset.number)));
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
    const { width, height } = real[0];
    // Publishers that do not say how many samples a frame stacks: square images stacked vertically.
    const rows = msg.rows > 1 ? msg.rows : height > width && height % width === 0 ? height / width : 1;
    dream.frames = { real, imagined, rows, context: msg.context ?? null, step: msg.step, samples: msg.samples || null };
    $("dream-view").hidden = false;
    $("dream-empty").hidden = true;
    drawDream();
    stats.dreams = (stats.dreams || 0) + 1;
  });

  // ---------------------------------------------------------------- run data
  // What the page holds of one run: metric series by key and episodes by id.
  const MAX_SERIES = 5000; // live points per series before every other one is dropped
  function newRunData() { return { metrics: new Map(), episodes: new Map(), steps: 0 }; }

  function addMetricRecords(data, records) {
    for (const record of records) {
      const step = record.step;
      if (typeof step !== "number") continue;
      data.steps += 1;
      for (const [key, value] of Object.entries(record)) {
        if (key === "step" || typeof value !== "number" || !isFinite(value)) continue;
        let series = data.metrics.get(key);
        if (!series) data.metrics.set(key, (series = { xs: [], ys: [] }));
        const { xs, ys } = series;
        if (!xs.length || step > xs[xs.length - 1]) { xs.push(step); ys.push(value); }
        else {
          let i = xs.length - 1;
          while (i > 0 && xs[i - 1] >= step) i--;
          if (xs[i] === step) ys[i] = value; else { xs.splice(i, 0, step); ys.splice(i, 0, value); }
        }
        if (xs.length > MAX_SERIES) {
          series.xs = xs.filter((_, i) => i % 2 === 0 || i === xs.length - 1);
          series.ys = ys.filter((_, i) => i % 2 === 0 || i === ys.length - 1);
        }
      }
    }
  }

  function addEpisodeRecords(data, records) {
    for (const e of records) data.episodes.set(e.id ?? `n${data.episodes.size}`, { ...(data.episodes.get(e.id) || {}), ...e });
  }

  // The training (mean of the last episodes) and evaluation series of one episode field.
  function episodeLines(data, field) {
    const train = { xs: [], ys: [] }, evals = { xs: [], ys: [] };
    const ordered = [...data.episodes.values()].filter((e) => typeof e.step === "number").sort((a, b) => a.step - b.step);
    for (const e of ordered) {
      const v = e[field];
      if (v == null || typeof v === "string") continue;
      const target = e.kind === "eval" ? evals : train;
      target.xs.push(e.step); target.ys.push(Number(v));
    }
    train.ys = Curves.rolling(train.ys, Curves.TRAIN_WINDOW);
    return { train, eval: evals };
  }

  // ---------------------------------------------------------------- compare runs and groups
  const runData = new Map(); // run name -> run data (the selected run and the overlaid ones)
  const compare = { runs: new Set((params.get("compare") || "").split(",").filter(Boolean)),
                    groups: new Set((params.get("groups") || "").split(",").filter(Boolean)) };
  const fetched = new Map(); // overlaid run -> time its history was fetched

  function groupMembers(group) {
    return state.runs.map((r) => r.name).filter((n) => n.startsWith(group + "/") && !n.slice(group.length + 1).includes("/"));
  }

  // Groups: folders holding two runs or more (an experiment's seeds of one variant).
  function runGroups() {
    const counts = new Map();
    for (const r of state.runs) {
      const cut = r.name.lastIndexOf("/");
      if (cut > 0) counts.set(r.name.slice(0, cut), (counts.get(r.name.slice(0, cut)) || 0) + 1);
    }
    return [...counts].filter(([, n]) => n >= 2).map(([g]) => g).sort();
  }

  function overlaidRuns() {
    const names = new Set(compare.runs);
    for (const g of compare.groups) for (const m of groupMembers(g)) names.add(m);
    names.delete(state.run);
    return [...names];
  }

  async function fetchRun(name) {
    fetched.set(name, Date.now());
    try {
      const reply = await fetch(`/api/history?run=${encodeURIComponent(name)}&token=${encodeURIComponent(token)}`);
      if (!reply.ok) { console.warn("visualizer: no history for run", name, reply.status); return; }
      const body = await reply.json();
      const data = newRunData();
      addMetricRecords(data, body.metrics);
      addEpisodeRecords(data, body.episodes);
      runData.set(name, data);
      markCurvesDirty();
    } catch (error) {
      console.warn("visualizer: fetching run", name, "failed:", String(error));
    }
  }

  // Fetch overlaid runs once, and live ones again every 15 s.
  function refreshOverlays() {
    for (const name of overlaidRuns()) {
      const run = state.runs.find((r) => r.name === name);
      const last = fetched.get(name);
      if (last == null || (run && run.live && Date.now() - last > 15000)) fetchRun(name);
    }
  }
  setInterval(refreshOverlays, 2000);

  function toggleCompare(set, name, on) {
    if (on) set.add(name); else set.delete(name);
    const url = new URL(location.href);
    for (const [param, values] of [["compare", compare.runs], ["groups", compare.groups]]) {
      if (values.size) url.searchParams.set(param, [...values].join(",")); else url.searchParams.delete(param);
    }
    history.replaceState(null, "", url);
    refreshOverlays();
    renderRuns();
    markCurvesDirty();
  }

  // What the charts draw: the selected run, then each overlaid run, then each group's mean.
  function sources() {
    const out = [];
    if (state.run && runData.has(state.run)) out.push({ name: state.run, runs: [state.run] });
    for (const name of compare.runs) if (name !== state.run && runData.has(name)) out.push({ name, runs: [name] });
    for (const g of compare.groups) out.push({ name: `${g} (mean ± sd)`, runs: groupMembers(g).filter((m) => runData.has(m)), group: true });
    return out.filter((s) => s.runs.length).map((s, i) => ({ ...s, color: PALETTE[i % PALETTE.length] }));
  }

  function combine(source, lineOf) {
    const members = source.runs.map((r) => lineOf(runData.get(r))).filter((l) => l && l.xs.length);
    if (!members.length) return null;
    if (!source.group) return members[0];
    const agg = Curves.aggregate(members.map((l) => [l.xs, l.ys]));
    return agg && { xs: agg.xs, ys: agg.mean, band: { upper: agg.upper, lower: agg.lower } };
  }

  // ---------------------------------------------------------------- training curves
  const charts = new Map(); // chart id -> Chart
  let curvesDirty = false;
  const smoothingInput = $("smoothing");
  smoothingInput.value = params.get("smoothing") ?? "0.6";
  smoothingInput.oninput = () => { $("smoothing-value").textContent = Number(smoothingInput.value).toFixed(2); markCurvesDirty(); };
  $("smoothing-value").textContent = Number(smoothingInput.value).toFixed(2);
  for (const details of document.querySelectorAll(".chart-group")) details.addEventListener("toggle", markCurvesDirty);

  function markCurvesDirty() { curvesDirty = true; }

  function resetCharts() {
    for (const chart of charts.values()) chart.destroy();
    charts.clear();
    stats.chartPoints = 0;
    markCurvesDirty();
  }

  // Every chart the sources have data for: {id, title, group, lines}.
  function chartSpecs(list) {
    const specs = [];
    const many = list.length > 1;
    for (const { field, title } of Curves.HEADLINE) {
      const lines = [];
      for (const s of list) {
        const prefix = many ? s.name + " · " : "";
        const train = combine(s, (d) => episodeLines(d, field).train);
        const evals = combine(s, (d) => {
          const fromEpisodes = episodeLines(d, field).eval;
          const key = ["success", "collision"].includes(field) ? `eval/${field}_rate` : `eval/${field}`;
          return fromEpisodes.xs.length ? fromEpisodes : d.metrics.get(key);
        });
        if (train) lines.push({ ...train, label: prefix + "train", color: s.color });
        if (evals) lines.push({ ...evals, label: prefix + "eval", color: s.color, dash: [6, 4] });
      }
      if (lines.length) specs.push({ id: "h:" + field, title, group: "headline", lines });
    }
    const keys = new Set();
    for (const s of list) for (const r of s.runs) for (const k of runData.get(r).metrics.keys()) keys.add(k);
    for (const key of [...keys].sort()) {
      const group = Curves.groupOf(key);
      if (!group) continue;
      const lines = [];
      for (const s of list) {
        const line = combine(s, (d) => d.metrics.get(key));
        if (line) lines.push({ ...line, label: s.name, color: s.color });
      }
      if (lines.length) specs.push({ id: "m:" + key, title: key, group, lines });
    }
    return specs;
  }

  function redrawCharts() {
    curvesDirty = false;
    const list = sources();
    const specs = chartSpecs(list);
    const smoothing = Number(smoothingInput.value);
    const wanted = new Set(specs.map((s) => s.id));
    for (const [id, chart] of charts) if (!wanted.has(id)) { chart.destroy(); charts.delete(id); }
    const counts = {};
    let points = 0;
    for (const spec of specs) {
      counts[spec.group] = (counts[spec.group] || 0) + 1;
      const container = $("charts-" + spec.group);
      const open = spec.group === "headline" || container.closest("details").open;
      let chart = charts.get(spec.id);
      if (!open) { if (chart) { chart.destroy(); charts.delete(spec.id); } continue; }
      if (!chart) { chart = new Curves.Chart(spec.title, container); charts.set(spec.id, chart); }
      container.append(chart.card); // keeps the charts in order
      chart.draw(spec.lines, smoothing);
      points += spec.lines.reduce((n, l) => n + l.xs.length, 0);
    }
    for (const g of Curves.GROUPS) {
      $("count-" + g.id).textContent = counts[g.id] ? `${counts[g.id]} chart${counts[g.id] > 1 ? "s" : ""}` : "none";
      $("charts-" + g.id).closest("details").hidden = !counts[g.id];
    }
    $("charts-headline").hidden = !counts.headline;
    stats.chartPoints = points;
    stats.redraws = (stats.redraws || 0) + 1;
    updateCurvesEmpty(specs.length > 0);
    const data = runData.get(state.run);
    $("metrics-summary").textContent = data && data.steps ? `${data.steps.toLocaleString("en-US")} logged steps` +
      (list.length > 1 ? ` · ${list.length} runs overlaid` : "") : "";
  }
  setInterval(() => { if (curvesDirty) redrawCharts(); }, 250);
  new ResizeObserver(() => { for (const chart of charts.values()) chart.resize(); }).observe($("curves"));

  function updateCurvesEmpty(has) {
    const empty = $("curves-empty");
    empty.hidden = has;
    empty.innerHTML = `No training metrics yet. They are read from <code></code> and updated live while a
      trainer publishes to this server.`;
    empty.querySelector("code").textContent = `${document.body.dataset.logdir}/${state.run || "<run>"}/metrics.jsonl`;
  }

  // ---------------------------------------------------------------- episodes
  // Recorded videos: evaluations' by step, training episodes' by "step/number".
  let videos = { eval: {}, train: {} };
  const episodeVideos = (e) =>
    (typeof e.step === "number" && (e.kind === "eval" ? videos.eval[String(e.step)] : videos.train[`${e.step}/${e.number}`])) || [];
  let videosDue = null;
  function fetchVideosSoon() { // a trainer writes an episode's videos before its row: one listing for a burst of rows
    if (!videosDue) videosDue = setTimeout(() => { videosDue = null; fetchVideos(); }, 1000);
  }
  async function fetchVideos() {
    if (!state.run) return;
    const run = state.run;
    try {
      const reply = await fetch(`/api/videos?run=${encodeURIComponent(run)}&token=${encodeURIComponent(token)}`);
      if (reply.ok && run === state.run) { videos = await reply.json(); renderEpisodes(); }
    } catch (error) {
      console.warn("visualizer: listing videos failed:", String(error));
    }
  }

  function resetEpisodes() {
    videos = { eval: {}, train: {} };
    $("episode-video").hidden = true;
    $("episode-video").querySelector("video").removeAttribute("src");
    stats.episodes = 0;
    renderEpisodes();
  }

  const rate = (v) => (v == null ? "—" : `${Math.round(100 * v)}%`);
  function cell(value, kind) {
    const td = document.createElement("td");
    if (kind === "bool") {
      td.textContent = value == null ? "—" : value ? "✓" : "·";
      td.className = value ? "yes" : "no";
    } else if (kind === "hit") {
      td.textContent = value == null ? "—" : value ? "✗" : "·";
      td.className = value ? "hit" : "no";
    } else if (kind === "rate") {
      td.textContent = rate(value);
    } else {
      td.textContent = fmt(value, 2);
    }
    return td;
  }

  function playEpisode(e, urls) {
    const box = $("episode-video");
    const video = box.querySelector("video");
    const choose = box.querySelector(".video-streams");
    choose.replaceChildren();
    const play = (url) => {
      video.src = url + (token ? `?token=${encodeURIComponent(token)}` : "");
      video.play().catch(() => {});
      for (const b of choose.children) b.classList.toggle("active", b.dataset.url === url);
    };
    for (const url of urls) {
      const b = document.createElement("button");
      b.className = "tab";
      b.dataset.url = url;
      b.textContent = url.split("/").pop().replace(/^(eval|train)-/, "").replace(/-\d{10}(-ep\d+)?\.mp4$/, "");
      b.onclick = () => play(url);
      choose.append(b);
    }
    const number = e.kind === "eval" || e.number == null ? "" : ` #${e.number}`;
    box.querySelector(".video-title").textContent = `${e.kind} episode${number} at step ${e.step.toLocaleString("en-US")}`;
    box.hidden = false;
    play(urls[0]);
  }

  function renderEpisodes() {
    const data = runData.get(state.run);
    const all = data ? [...data.episodes.values()] : [];
    const has = all.length > 0;
    stats.episodes = all.length;
    $("episodes-card").hidden = !has;
    const empty = $("episodes-empty");
    empty.hidden = has;
    empty.innerHTML = "No finished episodes yet. They come from <code></code> and from live publishers.";
    empty.querySelector("code").textContent = `${state.run || "<run>"}/scores.jsonl`;
    const rows = $("episode-rows");
    rows.replaceChildren();
    for (const e of all.slice(-300).reverse()) {
      const tr = document.createElement("tr");
      const evaluation = e.kind === "eval";
      const urls = episodeVideos(e);
      tr.className = e.kind + (urls.length ? " has-video" : "") + (dreamEpisodes.includes(e.number) ? " dreamed" : "");
      if (e.number != null) tr.dataset.number = e.number;
      const kind = cell(evaluation ? `eval${e.episodes ? " ×" + e.episodes : ""}` : "train");
      kind.className = "kind";
      tr.append(kind, cell(e.number != null ? "#" + e.number : "—"), cell(e.step), cell(e.env), cell(e["return"]), cell(e.length),
        cell(e.success, evaluation ? "rate" : "bool"), cell(e.collision, evaluation ? "rate" : "hit"),
        cell(e.route_completion, "rate"), cell(e.terminal_reason ?? "—"), cell(urls.length ? "▶" : ""));
      if (urls.length) { tr.title = "play the recorded video"; tr.onclick = () => playEpisode(e, urls); }
      rows.append(tr);
    }
    const train = all.filter((e) => e.kind !== "eval").slice(-100);
    const evals = all.filter((e) => e.kind === "eval");
    const successes = train.map((e) => e.success).filter((v) => v != null);
    const returns = train.map((e) => e["return"]).filter((v) => typeof v === "number");
    const parts = [`${train.length < 100 ? train.length : "100+"} training episode${train.length === 1 ? "" : "s"}`];
    if (evals.length) parts.push(`${evals.length} evaluation${evals.length === 1 ? "" : "s"}`);
    if (returns.length) parts.push(`mean return ${fmt(returns.reduce((a, b) => a + b, 0) / returns.length)} (last ${returns.length})`);
    if (successes.length) parts.push(`success ${(100 * successes.filter(Boolean).length / successes.length).toFixed(0)}%`);
    $("episode-summary").textContent = has ? parts.join(" · ") : "";
  }

  socket.on("history", (msg) => {
    if (msg.run !== state.run) return;
    resetCharts();
    resetEpisodes();
    const data = newRunData();
    addMetricRecords(data, msg.metrics);
    addEpisodeRecords(data, msg.episodes);
    runData.set(state.run, data);
    renderEpisodes();
    fetchVideos();
    addLog(msg.log || [], true);
  });
  socket.on("metrics", (msg) => {
    const data = runData.get(msg.run);
    if (msg.run === state.run && data) { addMetricRecords(data, msg.records); markCurvesDirty(); }
  });
  socket.on("episodes", (msg) => {
    const data = runData.get(msg.run);
    if (msg.run !== state.run || !data) return;
    addEpisodeRecords(data, msg.records);
    markCurvesDirty();
    renderEpisodes();
    fetchVideosSoon();
  });

  // ---------------------------------------------------------------- log
  // The run's train.log: "<time> <LEVEL> <text>" lines, newest at the bottom; the view follows new
  // lines while it is scrolled to the bottom.
  const MAX_LOG_LINES = 2000;
  let logLines = [];
  const LEVEL = /^(\S+)\s+(INFO|WARNING|ERROR)\s/;
  function logLevel(line) { const m = LEVEL.exec(line); return m ? m[2].toLowerCase() : "info"; }

  function renderLog() {
    const box = $("log-lines");
    const follow = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
    const problemsOnly = $("log-problems").checked;
    box.replaceChildren();
    let warnings = 0, errors = 0;
    for (const line of logLines) {
      const level = logLevel(line);
      warnings += level === "warning"; errors += level === "error";
      if (problemsOnly && level === "info") continue;
      const div = document.createElement("div");
      div.className = "log-line " + level;
      div.textContent = line;
      box.append(div);
    }
    const has = logLines.length > 0;
    $("log-card").hidden = !has;
    const empty = $("log-empty");
    empty.hidden = has;
    empty.innerHTML = "No log yet. A trainer writes what it does (phases, evaluations, warnings, errors) to <code></code>.";
    empty.querySelector("code").textContent = `${state.run || "<run>"}/train.log`;
    const parts = [`${logLines.length} line${logLines.length === 1 ? "" : "s"}`];
    if (warnings) parts.push(`${warnings} warning${warnings > 1 ? "s" : ""}`);
    if (errors) parts.push(`${errors} error${errors > 1 ? "s" : ""}`);
    $("log-summary").textContent = has ? parts.join(" · ") : "";
    $("log-summary").classList.toggle("has-errors", errors > 0);
    stats.logLines = logLines.length;
    if (follow) box.scrollTop = box.scrollHeight;
  }
  $("log-problems").onchange = renderLog;

  function addLog(lines, reset) {
    logLines = (reset ? [] : logLines).concat(lines);
    if (logLines.length > MAX_LOG_LINES) logLines = logLines.slice(-MAX_LOG_LINES);
    renderLog();
  }
  socket.on("log", (msg) => { if (msg.run === state.run) addLog(msg.lines, msg.reset); });

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
  updateCurvesEmpty(false);
  renderEpisodes();
  renderLog();
})();
