// Training curves for the CarDreamer visualizer: which charts a run gets, series maths (EMA
// smoothing, decimation, mean ± spread over seeds) and one uPlot chart per metric.
// Exposes window.Curves; app.js feeds it the runs' histories.
(() => {
  "use strict";

  // Bookkeeping counters a trainer logs with its metrics: no charts.
  const BOOKKEEPING = new Set(["next_eval", "env_steps", "episodes", "updates", "replay/steps", "replay",
                               "eval/episodes"]);
  // The charts that answer "is it learning?", from the runs' episodes (training and evaluation).
  const HEADLINE = [
    { field: "success", title: "success rate" },
    { field: "collision", title: "collision rate" },
    { field: "route_completion", title: "route completion" },
    { field: "return", title: "episode return" },
    { field: "length", title: "episode length" },
    { field: "mean_speed", title: "speed (episode mean, m/s)" },
  ];
  const HEADLINE_FIELDS = new Set(HEADLINE.map((h) => h.field));
  // Grouped panels below the headline charts, matched on the metric key in this order.
  const GROUPS = [
    { id: "world", title: "World model", test: /(^|\/)(loss\/(image|rec|reward|rew|cont|con|dyn|rep|kl|dec|obs|[^/]*_mse)|openloop|model|wm|kl|prior|post)/ },
    { id: "ac", title: "Actor-critic", test: /(policy|value|actor|critic|ent|adv|repval|ret|action)/ },
    { id: "system", title: "System", test: /(^fps|\/fps|^replay|grad|time|mem|gpu|lr|duration)/ },
    { id: "other", title: "Other", test: /./ },
  ];
  const TRAIN_WINDOW = 20; // training episodes averaged per point of the training series
  const MAX_DRAWN = 1200; // points per series handed to uPlot (min/max decimation beyond)
  const POINTS_UNDER = 40; // series with fewer points are drawn with points too

  function groupOf(key) {
    if (BOOKKEEPING.has(key)) return null;
    if (key.startsWith("eval/") && HEADLINE_FIELDS.has(key.slice(5).replace(/_rate$/, ""))) return null;
    return GROUPS.find((g) => g.test.test(key)).id;
  }

  // TensorBoard's smoothing: an exponential moving average, debiased so that it starts at the data.
  function ema(ys, weight) {
    if (!weight) return ys;
    const out = new Array(ys.length);
    let last = 0, n = 0;
    for (let i = 0; i < ys.length; i++) {
      const y = ys[i];
      if (y == null || !isFinite(y)) { out[i] = null; continue; }
      last = last * weight + (1 - weight) * y;
      n += 1;
      out[i] = last / (1 - Math.pow(weight, n));
    }
    return out;
  }

  // At most ~max points: per bucket of consecutive points, its lowest and highest (spikes survive).
  function decimate(xs, ys, max = MAX_DRAWN) {
    if (xs.length <= max) return [xs, ys];
    const size = Math.ceil(xs.length / (max / 2));
    const ox = [], oy = [];
    for (let start = 0; start < xs.length; start += size) {
      let lo = -1, hi = -1;
      for (let i = start; i < Math.min(start + size, xs.length); i++) {
        if (ys[i] == null) continue;
        if (lo < 0 || ys[i] < ys[lo]) lo = i;
        if (hi < 0 || ys[i] > ys[hi]) hi = i;
      }
      if (lo < 0) continue;
      for (const i of lo === hi ? [lo] : [Math.min(lo, hi), Math.max(lo, hi)]) { ox.push(xs[i]); oy.push(ys[i]); }
    }
    const last = xs.length - 1; // the newest point always stays
    if (ox[ox.length - 1] !== xs[last] && ys[last] != null) { ox.push(xs[last]); oy.push(ys[last]); }
    return [ox, oy];
  }

  // Mean of the last `window` values at each point (the training series of rates and returns).
  function rolling(ys, window) {
    const out = [];
    let sum = 0;
    for (let i = 0; i < ys.length; i++) {
      sum += ys[i];
      if (i >= window) sum -= ys[i - window];
      out.push(sum / Math.min(i + 1, window));
    }
    return out;
  }

  // Mean and ± one standard deviation of several [xs, ys] series on a common grid of steps; each
  // member counts where it has data (linear interpolation between its points).
  function aggregate(members, gridPoints = 400) {
    const all = members.filter(([xs]) => xs.length);
    if (!all.length) return null;
    const lo = Math.min(...all.map(([xs]) => xs[0])), hi = Math.max(...all.map(([xs]) => xs[xs.length - 1]));
    const n = hi > lo ? gridPoints : 1;
    const grid = Array.from({ length: n }, (_, i) => (n === 1 ? lo : lo + ((hi - lo) * i) / (n - 1)));
    const mean = [], upper = [], lower = [];
    const at = all.map(() => 0);
    for (const x of grid) {
      const values = [];
      all.forEach(([xs, ys], m) => {
        if (x < xs[0] || x > xs[xs.length - 1]) return;
        while (at[m] < xs.length - 1 && xs[at[m] + 1] < x) at[m]++;
        const i = at[m];
        const j = Math.min(i + 1, xs.length - 1);
        const t = xs[j] > xs[i] ? Math.max(0, Math.min(1, (x - xs[i]) / (xs[j] - xs[i]))) : 0;
        if (ys[i] != null && ys[j] != null) values.push(ys[i] + t * (ys[j] - ys[i]));
      });
      if (!values.length) { mean.push(null); upper.push(null); lower.push(null); continue; }
      const m = values.reduce((a, b) => a + b, 0) / values.length;
      const sd = Math.sqrt(values.reduce((a, b) => a + (b - m) * (b - m), 0) / values.length);
      mean.push(m); upper.push(m + sd); lower.push(m - sd);
    }
    return { xs: grid, mean, upper, lower };
  }

  // The union of several series' steps, each series' values placed on it (null where it has none).
  function align(lines) {
    const steps = [...new Set(lines.flatMap((l) => l.xs))].sort((a, b) => a - b);
    const index = new Map(steps.map((s, i) => [s, i]));
    const columns = lines.map((l) => {
      const col = new Array(steps.length).fill(null);
      l.xs.forEach((x, i) => { col[index.get(x)] = l.ys[i]; });
      return col;
    });
    return [steps, ...columns];
  }

  const fmtStep = (s) => (s >= 1e6 ? (s / 1e6).toFixed(s % 1e6 ? 2 : 0) + "M" : s >= 1e3 ? (s / 1e3).toFixed(s % 1e3 ? 1 : 0) + "k" : String(s));
  const fmtValue = (v) => (v == null ? "—" : Math.abs(v) >= 1000 || Number.isInteger(v) ? v.toFixed(0)
    : Math.abs(v) >= 1 ? v.toFixed(3) : v.toPrecision(3));
  const fmtTick = (v) => (v == null ? "" : Math.abs(v) >= 1e4 ? fmtStep(v) : String(parseFloat(v.toPrecision(3))));
  const withAlpha = (hex, alpha) => hex + Math.round(alpha * 255).toString(16).padStart(2, "0");

  // One chart: lines are {label, color, xs, ys, dash?, band?: {upper, lower}}.
  class Chart {
    constructor(title, container) {
      this.title = title;
      this.log = false;
      this.card = document.createElement("div");
      this.card.className = "card chart-card";
      this.card.dataset.title = title;
      this.card.innerHTML = `<div class="chart-head"><span class="chart-title"></span>
        <label class="log-toggle" title="logarithmic y axis"><input type="checkbox"> log</label></div>
        <div class="plot"></div><div class="readout muted"></div>`;
      this.card.querySelector(".chart-title").textContent = title;
      this.card.querySelector("input").onchange = (e) => { this.log = e.target.checked; this.rebuild(); };
      this.readout = this.card.querySelector(".readout");
      container.append(this.card);
      this.plot = null;
      this.lines = [];
      this.shape = "";
    }

    // Draw `lines`, smoothed with EMA weight `smoothing` (raw data stays, faint, behind it).
    draw(lines, smoothing) {
      const drawn = [];
      for (const line of lines) {
        const smooth = smoothing > 0 && line.xs.length > 2 && !line.band;
        if (smooth) drawn.push({ ...line, label: line.label + " (raw)", raw: true });
        drawn.push(smooth ? { ...line, ys: ema(line.ys, smoothing) } : line);
      }
      const columns = [];
      for (const line of drawn) {
        const [xs, ys] = decimate(line.xs, this.log ? line.ys.map((y) => (y > 0 ? y : null)) : line.ys);
        columns.push({ ...line, xs, ys });
        if (line.band) {
          const [bx, upper] = decimate(line.xs, line.band.upper);
          const [, lower] = decimate(line.xs, line.band.lower);
          columns.push({ xs: bx, ys: upper, bandOf: line }, { xs: bx, ys: lower, bandOf: line });
        }
      }
      this.lines = columns;
      this.data = align(columns);
      const shape = JSON.stringify([this.log, columns.map((c) => [c.label, c.color, !!c.raw, !!c.bandOf,
        c.xs.length <= POINTS_UNDER])]);
      if (shape !== this.shape || !this.plot) { this.shape = shape; this.rebuild(); } else this.plot.setData(this.data);
      this.card.dataset.series = JSON.stringify(columns.filter((c) => !c.bandOf && !c.raw).map((c) => c.label));
      this.card.dataset.points = String(columns.reduce((n, c) => n + c.xs.length, 0));
    }

    rebuild() {
      if (this.plot) this.plot.destroy();
      if (!this.data) return;
      const axis = { stroke: "#8c96a8", grid: { stroke: "#232a36", width: 1 }, ticks: { stroke: "#283040", width: 1 },
                     font: "11px system-ui, sans-serif" };
      const series = [{ label: "step" }];
      const bands = [];
      this.lines.forEach((line, i) => {
        if (line.bandOf) {
          series.push({ label: line.bandOf.label + " band", stroke: "transparent", width: 0, points: { show: false }, spanGaps: true });
          if (this.lines[i - 1] && this.lines[i - 1].bandOf === line.bandOf) {
            bands.push({ series: [i, i + 1], fill: withAlpha(line.bandOf.color, 0.18) });
          }
          return;
        }
        const few = line.xs.length <= POINTS_UNDER;
        series.push({
          label: line.label, stroke: line.raw ? withAlpha(line.color, 0.28) : line.color, width: line.raw ? 1 : 1.7,
          dash: line.dash, spanGaps: true,
          points: { show: few && !line.raw, size: 6, fill: line.color, stroke: line.color },
        });
      });
      const width = Math.max(160, this.card.clientWidth - 24);
      this.plot = new uPlot({
        width, height: 180, series, bands,
        scales: { x: { time: false }, y: this.log ? { distr: 3, log: 10 } : { auto: true } },
        axes: [{ ...axis, values: (u, ticks) => ticks.map(fmtStep) }, { ...axis, size: 52, values: (u, ticks) => ticks.map(fmtTick) }],
        legend: { show: false },
        cursor: { drag: { x: true, y: false }, points: { size: 7 } },
        hooks: { setCursor: [(u) => this.showReadout(u)] },
      }, this.data, this.card.querySelector(".plot"));
      this.showReadout(this.plot);
    }

    // Hover readout: the step under the cursor and each line's nearest value there.
    showReadout(u) {
      const idx = u.cursor.idx;
      this.readout.replaceChildren();
      const key = document.createElement("div");
      key.className = "legend";
      const steps = this.data[0];
      if (idx != null) {
        const b = document.createElement("b");
        b.textContent = "step " + steps[idx].toLocaleString("en-US");
        key.append(b);
      }
      this.lines.forEach((line, i) => {
        if (line.bandOf || line.raw) return;
        const col = this.data[i + 1];
        let at = null; // the nearest index with a value: at the cursor, else the newest
        if (idx != null) {
          for (let d = 0; d < col.length && at == null; d++) {
            if (idx - d >= 0 && col[idx - d] != null) at = idx - d;
            else if (idx + d < col.length && col[idx + d] != null) at = idx + d;
          }
        } else {
          for (let j = col.length - 1; j >= 0 && at == null; j--) if (col[j] != null) at = j;
        }
        const value = at == null ? null : col[at];
        const sd = line.band && at != null && this.data[i + 2][at] != null ? this.data[i + 2][at] - value : null;
        const item = document.createElement("span");
        item.innerHTML = '<i></i><span class="name"></span> <span class="value"></span>';
        const swatch = item.querySelector("i");
        swatch.style.color = line.color;
        swatch.style.background = line.color;
        if (line.dash) swatch.classList.add("dashed");
        item.querySelector(".name").textContent = line.label;
        item.querySelector(".value").textContent = fmtValue(value) + (sd != null ? " ± " + fmtValue(sd) : "");
        key.append(item);
      });
      this.readout.append(key);
    }

    resize() {
      if (this.plot) this.plot.setSize({ width: Math.max(160, this.card.clientWidth - 24), height: 180 });
    }

    destroy() { if (this.plot) this.plot.destroy(); this.card.remove(); }
  }

  window.Curves = { HEADLINE, GROUPS, TRAIN_WINDOW, groupOf, rolling, aggregate, Chart };
})();
