// sifir's Learn view: pick a network and a recipe, start it, and watch it learn from the reports
// the server streams (GET /api/learn/events). The settings live in the URL, so a run can be shared
// and replayed; run A is the one the settings describe, run B (when comparing) the same but for
// one option. Every number shown is computed on the server by the training process.
"use strict";

(() => {
  const { t, number } = window.sifirI18n;
  const D = window.sifirLearnDraw;
  const $ = (id) => document.getElementById(id);
  const form = $("learn-form");
  const FIELDS = ["model", "hidden", "activation", "optimizer", "lr", "batch_size", "epochs", "schedule", "augment", "seed"];
  const URL_FIELDS = [...FIELDS, "pace", "compare", "b_field", "b_value"];
  const COLORS = { A: "#5146e5", B: "#e8590c" };
  const MOMENTUM = 0.9;          // "SGD + momentum"
  const LOSS_CAP = 4;            // the loss axis ends here: a diverging loss sits on its edge

  let info = null;               // GET /api/learn: presets, limits, room
  let room = null;
  let allowed = false;           // this page holds the launch's token
  const runs = new Map();        // run id -> what the server told of it
  let pinImage = null;           // the learner's drawing, as a data URL, until a run follows it
  let focus = "A";

  // -- the two views --------------------------------------------------------------------------------
  const views = { draw: [$("tab-draw"), $("draw-view")], learn: [$("tab-learn"), $("learn-view")] };

  function showView(name, remember = true) {
    for (const [key, [tab, panel]] of Object.entries(views)) {
      tab.setAttribute("aria-selected", String(key === name));
      panel.hidden = key !== name;
    }
    if (remember) setParams({ view: name === "learn" ? "learn" : null });
    if (name === "learn") render();
  }
  $("tab-draw").addEventListener("click", () => showView("draw"));
  $("tab-learn").addEventListener("click", () => showView("learn"));

  // -- settings <-> form <-> URL -------------------------------------------------------------------------
  const field = (name) => form.elements[name];

  function presetOf(model) {
    return (info && info.presets[model]) || null;
  }

  function fillDefaults(model) {
    const p = presetOf(model);
    if (!p) return;
    field("hidden").value = (p.hidden || [100]).join(", ");
    field("activation").value = p.activation || "relu";
    field("optimizer").value = p.optimizer === "sgd" && p.momentum > 0 ? "momentum" : p.optimizer;
    field("lr").value = String(p.lr);
    field("batch_size").value = String(p.batch_size);
    field("epochs").value = String(p.epochs);
    field("schedule").value = p.schedule;
    field("augment").value = p.augment || "none";
  }

  function parseNumber(text) {
    const v = Number(String(text).trim().replace(",", "."));
    return String(text).trim() === "" || !Number.isFinite(v) ? String(text) : v;
  }

  function parseHidden(text) {
    const parts = String(text).split(/[\s,;]+/).filter(Boolean);
    return parts.map((s) => (/^\d+$/.test(s) ? Number(s) : s));
  }

  // the options of run A, as the API takes them (every one said, so nothing depends on defaults)
  function optionsA() {
    const model = field("model").value;
    const o = { model, lr: parseNumber(field("lr").value), batch_size: parseNumber(field("batch_size").value),
                epochs: parseNumber(field("epochs").value), schedule: field("schedule").value,
                augment: field("augment").value, seed: parseNumber(field("seed").value || "0") };
    const opt = field("optimizer").value;
    o.optimizer = opt === "momentum" ? "sgd" : opt;
    o.momentum = opt === "momentum" ? MOMENTUM : 0;
    if (model === "custom") {
      o.hidden = parseHidden(field("hidden").value);
      o.activation = field("activation").value;
    }
    return o;
  }

  function optionsB() {
    const o = optionsA(), name = field("b_field").value, text = field("b_value").value;
    if (name === "hidden") { o.hidden = parseHidden(text); o.model = "custom"; o.activation = o.activation || "relu"; }
    else if (name === "optimizer") {
      o.optimizer = text === "momentum" ? "sgd" : text;
      o.momentum = text === "momentum" ? MOMENTUM : 0;
    } else if (name === "activation") { o.activation = text; o.model = "custom"; o.hidden = o.hidden || parseHidden(field("hidden").value); }
    else if (name === "model") {
      o.model = text;
      const p = presetOf(text);
      if (p) Object.assign(o, { lr: p.lr, batch_size: p.batch_size, epochs: o.epochs, optimizer: p.optimizer,
                                momentum: p.momentum, schedule: p.schedule, augment: p.augment || "none" });
      if (text !== "custom") { delete o.hidden; delete o.activation; }
    } else o[name] = parseNumber(text);
    return o;
  }

  // the URL names the model and what differs from its preset, plus the view and the language
  function writeURL() {
    const model = field("model").value, p = presetOf(model) || {};
    const values = {};
    for (const name of URL_FIELDS) {
      const el = field(name);
      values[name] = el.type === "checkbox" ? (el.checked ? "1" : null) : el.value;
    }
    const defaults = { hidden: (p.hidden || [100]).join(", "), activation: p.activation || "relu",
                       optimizer: p.optimizer === "sgd" && p.momentum > 0 ? "momentum" : p.optimizer,
                       lr: String(p.lr), batch_size: String(p.batch_size), epochs: String(p.epochs),
                       schedule: p.schedule, augment: p.augment || "none", seed: "0", pace: "" };
    const params = {};
    for (const name of URL_FIELDS) {
      let v = values[name];
      if (name !== "model" && (v === defaults[name] || v === "" || v === null)) v = null;
      if ((name === "hidden" || name === "activation") && model !== "custom") v = null;
      if ((name === "b_field" || name === "b_value") && !values.compare) v = null;
      params[name] = v === null ? null : String(v).replace(/\s+/g, "");
    }
    setParams(params);
  }

  function readURL() {
    const q = new URLSearchParams(location.search);
    const model = q.get("model");
    if (model && presetOf(model)) field("model").value = model;
    fillDefaults(field("model").value);
    for (const name of URL_FIELDS) {
      if (!q.has(name) || name === "model") continue;
      const el = field(name);
      if (el.type === "checkbox") el.checked = q.get(name) === "1";
      else el.value = name === "hidden" ? q.get(name).split(",").join(", ") : q.get(name);
    }
    if (!field("seed").value) field("seed").value = "0";
    showFields();
  }

  function setParams(params) {
    const url = new URL(location.href);
    url.searchParams.delete("token");   // the token lives in a cookie; a shared link must not carry it
    for (const [k, v] of Object.entries(params)) {
      if (v === null || v === undefined) url.searchParams.delete(k); else url.searchParams.set(k, v);
    }
    history.replaceState(null, "", url);
  }

  function showFields() {
    form.classList.toggle("custom", field("model").value === "custom");
    form.classList.toggle("comparing", field("compare").checked);
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "model") fillDefaults(field("model").value);
    if (event.target.name === "pace") setPace();
    showFields();
    clearInvalid();
    writeURL();
  });
  form.addEventListener("input", () => { clearInvalid(); writeURL(); });
  form.addEventListener("submit", (event) => event.preventDefault());

  function clearInvalid() {
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    $("learn-error").hidden = true;
  }

  // -- talking to the server ------------------------------------------------------------------------------
  async function api(method, path, body) {
    const response = await fetch(path + (path.includes("?") ? "&" : "?") + `lang=${window.sifirI18n.lang}`, {
      method, headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({ error: t("server_answered", { status: response.status }) }));
    if (!response.ok) {
      const error = new Error(answer.error || t("server_answered", { status: response.status }));
      Object.assign(error, { code: answer.code, field: answer.field, status: response.status });
      throw error;
    }
    return answer;
  }

  function showError(err) {
    const box = $("learn-error");
    box.textContent = err.code === "bad_token" ? t("learn_need_token") : err.message;
    box.hidden = false;
    if (err.field && field(err.field)) field(err.field).setAttribute("aria-invalid", "true");
    if (err.field === "momentum") field("optimizer").setAttribute("aria-invalid", "true");
  }

  const mine = (label) => [...runs.values()].find((r) => r.label === label) || null;
  const live = (run) => run && !["done", "stopped", "diverged", "failed"].includes(run.state);

  async function start(extra = {}) {
    clearInvalid();
    try {
      for (const old of [mine("A"), mine("B")]) if (old) await api("DELETE", `/api/learn/runs/${old.id}`);
      const pace = field("pace").value ? Number(field("pace").value) : null;
      const common = { pin: pinImage, pace, ...extra };
      const a = await api("POST", "/api/learn/runs", { ...optionsA(), ...common, label: "A" });
      if (!runs.has(a.id)) runs.set(a.id, a);   // the stream may have told of it first
      if (field("compare").checked) {
        const b = await api("POST", "/api/learn/runs", { ...optionsB(), ...common, label: "B" });
        if (!runs.has(b.id)) runs.set(b.id, b);
      }
    } catch (err) {
      showError(err);
    }
    render();
  }

  async function act(action) {
    clearInvalid();
    const targets = [mine("A"), mine("B")].filter(live);
    if (action === "step" && !targets.length) return start({ step: true });
    try {
      for (const run of targets) await api("POST", `/api/learn/runs/${run.id}/${action}`);
    } catch (err) { showError(err); }
  }

  async function reset() {
    clearInvalid();
    try {
      for (const run of [mine("A"), mine("B")]) if (run) { await api("DELETE", `/api/learn/runs/${run.id}`); runs.delete(run.id); }
    } catch (err) { showError(err); }
    render();
  }

  async function setPace() {
    const value = field("pace").value ? Number(field("pace").value) : null;
    for (const run of [mine("A"), mine("B")].filter(live)) {
      try { await api("POST", `/api/learn/runs/${run.id}/pace`, { value }); } catch (err) { showError(err); }
    }
  }

  $("learn-start").addEventListener("click", () => start());
  $("learn-pause").addEventListener("click", () => act("pause"));
  $("learn-resume").addEventListener("click", () => act("resume"));
  $("learn-step").addEventListener("click", () => act("step"));
  $("learn-stop").addEventListener("click", () => act("stop"));
  $("learn-reset").addEventListener("click", reset);
  $("learn-copy").addEventListener("click", async () => {
    const text = $("learn-command").textContent;
    try { await navigator.clipboard.writeText(text); $("learn-copy").textContent = t("learn_copied"); }
    catch (err) { getSelection().selectAllChildren($("learn-command")); }
  });
  $("learn-use").addEventListener("click", async () => {
    const run = focusRun();
    if (!run) return;
    try {
      await api("POST", `/api/learn/runs/${run.id}/use`);
      window.dispatchEvent(new Event("sifir:model-changed"));
      showView("draw");
    } catch (err) { showError(err); }
  });

  // -- the stream of reports --------------------------------------------------------------------------------
  function connect() {
    const source = new EventSource("/api/learn/events");
    source.addEventListener("hello", (e) => {
      const hello = JSON.parse(e.data);
      room = hello.room;
      runs.clear();
      for (const r of hello.runs) runs.set(r.id, r);
      render();
    });
    const on = (kind, f) => source.addEventListener(kind, (e) => { f(JSON.parse(e.data)); render(); });
    on("room", (r) => { room = r; });
    on("run", (r) => runs.set(r.id, r));
    on("removed", (m) => runs.delete(m.run));
    const of = (m) => runs.get(m.run);
    on("state", (m) => { const r = of(m); if (r && !r.end) { r.state = m.state; r.stateStep = m.step; } });
    on("started", (m) => { const r = of(m); if (r) r.started = m; });
    on("batch", (m) => {
      const r = of(m);
      if (!r) return;
      r.points.push(m);
      if (m.pin) r.pin = { pin: m.pin, step: m.step };
    });
    on("look", (m) => {
      const r = of(m);
      if (!r) return;
      r.look = m;
      r.samples.push({ step: m.step, epoch: m.epoch, loss: m.sample.loss, acc: m.sample.acc });
      if (m.pin) r.pin = { pin: m.pin, step: m.step };
    });
    on("pin", (m) => { const r = of(m); if (r) r.pin = m.pin ? { pin: m.pin, step: m.step } : null; });
    on("epoch", (m) => { const r = of(m); if (r) r.epochs.push(m); });
    on("end", (m) => {
      const r = of(m);
      if (r) { r.end = m; r.state = m.state; r.has_weights = m.has_weights; }
    });
    source.onerror = () => { if (source.readyState === EventSource.CLOSED) setTimeout(connect, 2000); };
  }

  // -- showing it all ---------------------------------------------------------------------------------------
  const charts = { loss: new D.Chart($("loss-chart"), { cap: LOSS_CAP }),
                   acc: new D.Chart($("acc-chart"), { yMax: 1, percent: true }) };
  let pending = false;
  let drawn = null;   // which run, look and epoch the pictures show

  function render() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); });
  }

  function focusRun() {
    return mine(focus) || mine("A") || mine("B");
  }

  // comparing: which run's pictures to show
  for (const label of ["A", "B"]) {
    $(`learn-focus-${label}`).addEventListener("click", () => { focus = label; drawn = null; render(); });
  }

  function draw() {
    const a = mine("A"), b = mine("B"), run = focusRun();
    const anyLive = [a, b].some(live);
    $("learn-start").disabled = anyLive || !allowed;
    $("learn-pause").disabled = !anyLive || ![a, b].some((r) => r && r.state === "running" || r && r.state === "loading");
    $("learn-resume").disabled = ![a, b].some((r) => r && r.state === "paused");
    $("learn-step").disabled = !allowed || (anyLive && ![a, b].some((r) => r && r.state === "paused"));
    $("learn-stop").disabled = !anyLive;
    $("learn-reset").disabled = !a && !b;
    $("learn-use").disabled = !run || !(run.has_weights || ["running", "paused"].includes(run.state));
    const save = $("learn-save");
    if (run && (run.has_weights || ["running", "paused"].includes(run.state))) {
      save.href = `/api/learn/runs/${run.id}/model.npz`;
      save.removeAttribute("aria-disabled");
    } else {
      save.removeAttribute("href");
      save.setAttribute("aria-disabled", "true");
    }
    for (const el of form.elements) el.disabled = anyLive && el.name !== "pace";
    $("learn-command").textContent = run ? run.command : "";
    $("learn-room").textContent = room ? t("learn_room", { cpus: room.cpus, slots: room.slots, watchers: room.watchers }) : "";
    $("learn-status").textContent = [a, b].filter(Boolean).map((r) => (b ? `${r.label}: ` : "") + status(r)).join(" · ")
      || (allowed ? t("learn_idle") : t("learn_need_token"));
    $("learn-speed").textContent = run ? speed(run) : "";
    $("learn-focus").hidden = !(a && b);
    for (const label of ["A", "B"]) $(`learn-focus-${label}`).setAttribute("aria-selected", String(Boolean(run && run.label === label)));
    drawCurves([a, b].filter(Boolean));
    drawVerdict([a, b].filter(Boolean));
    const key = run ? `${run.id}:${run.look ? run.look.step : -1}:${run.epochs.length}:${window.sifirI18n.lang}` : "";
    if (key === drawn) { drawPin(run); return; }   // the pictures below change with a look or an epoch
    drawn = key;
    if (run) {
      D.templates($("learn-templates"), run.look && run.look.first_layer, (i) => t("learn_unit", { n: i + 1 }));
      const fl = run.look && run.look.first_layer;
      $("learn-templates-note").textContent = fl && fl.shape[1] !== 28
        ? t("learn_filters_note", { shown: fl.shape[0], total: fl.total, size: `${fl.shape[1]}×${fl.shape[2]}` })
        : (fl && fl.total > fl.shape[0] ? t("learn_templates_some", { shown: fl.shape[0], total: fl.total }) + " " : "")
          + t("learn_templates_note");
    } else {
      D.templates($("learn-templates"), null);
    }
    drawPin(run);
    drawStats(run);
    drawEpoch(run);
  }

  function status(r) {
    const s = r.started, last = r.points[r.points.length - 1];
    const epochs = r.recipe.epochs;
    switch (r.state) {
      case "queued": return t("learn_queued", { slots: room ? room.slots : 1 });
      case "loading": return t("learn_loading");
      case "running": return last ? t("learn_running", { epoch: last.epoch, epochs, batch: last.batch, batches: last.batches })
        : t("learn_loading");
      case "paused": return t("learn_paused", { step: r.stateStep ?? (last ? last.step : 0), epoch: last ? last.epoch : 1,
                                                 epochs });
      case "done": {
        const e = r.epochs[r.epochs.length - 1];
        const test = r.end ? r.end.test_accuracy : null;
        return t("learn_done", { val: e ? number(100 * e.val_acc, 1) : "–", test: test == null ? "–" : number(100 * test, 1) });
      }
      case "stopped": return t("learn_stopped", { step: last ? last.step : 0 });
      case "diverged": return t("learn_diverged_short");
      case "failed": return t("learn_failed", { message: r.end ? r.end.message : "" });
      default: return s ? "" : t("learn_loading");
    }
  }

  function speed(r) {
    const last = r.points[r.points.length - 1];
    if (!last || !last.images_per_s) return "";
    const done = r.epochs.length;
    const perEpoch = done ? r.epochs[done - 1].seconds / done : null;
    const parts = [t("learn_rate", { rate: number(Math.round(last.images_per_s)) })];
    if (perEpoch) parts.push(t("learn_per_epoch", { seconds: number(perEpoch, 1) }));
    if (live(r) && last.seconds_left !== null) parts.push(t("learn_left", { time: duration(last.seconds_left) }));
    return parts.join(" · ");
  }

  function duration(s) {
    s = Math.max(0, Math.round(s));
    return s >= 60 ? t("learn_minutes", { m: Math.floor(s / 60), s: s % 60 }) : t("learn_seconds", { s });
  }

  function drawCurves(list) {
    const loss = [], acc = [];
    let xMax = 1, epochSteps = 0;
    const marks = [];
    for (const r of list) {
      const prefix = list.length > 1 ? `${r.label} ` : "", color = COLORS[r.label] || COLORS.A;
      const batches = r.started ? r.started.batches : (r.points[0] ? r.points[0].batches : 0);
      epochSteps = epochSteps || batches;
      xMax = Math.max(xMax, batches * r.recipe.epochs);
      const train = r.points.map((p) => ({ x: p.step, y: p.loss, p, kind: "train" }));
      const trainAcc = r.points.map((p) => ({ x: p.step, y: p.acc, p, kind: "train" }));
      const looks = r.samples;
      const val = r.epochs.map((e) => ({ x: e.step, y: e.val_loss, p: { step: e.step, epoch: e.epoch, batch: batches }, kind: "val" }));
      const valAcc = r.epochs.map((e) => ({ x: e.step, y: e.val_acc, p: { step: e.step, epoch: e.epoch, batch: batches }, kind: "val" }));
      const est = looks.map((l) => ({ x: l.step, y: l.loss, p: l, kind: "sample" }));
      const estAcc = looks.map((l) => ({ x: l.step, y: l.acc, p: l, kind: "sample" }));
      loss.push({ label: prefix + t("learn_training"), color, points: train },
                { label: prefix + t("learn_estimate"), color, dash: [5, 4], width: 1, points: est },
                { label: prefix + t("learn_validation"), color, dots: true, points: val });
      acc.push({ label: prefix + t("learn_training"), color, points: trainAcc },
               { label: prefix + t("learn_estimate"), color, dash: [5, 4], width: 1, points: estAcc },
               { label: prefix + t("learn_validation"), color, dots: true, points: valAcc });
      if (r.state === "diverged" && r.end && r.end.diverged) {
        const d = r.end.diverged;
        marks.push({ x: (d.epoch - 1) * batches + d.batch, label: prefix + t("learn_diverged_mark") });
      }
    }
    charts.loss.set(loss, xMax, epochSteps, marks);
    charts.acc.set(acc, xMax, epochSteps, []);
  }

  function drawVerdict(list) {
    const box = $("learn-verdict");
    const sentences = list.filter((r) => r.state === "diverged" && r.end && r.end.diverged).map((r) => {
      const d = r.end.diverged;
      const values = { epoch: d.epoch, batch: d.batch, batches: d.batches, lr: plain(d.lr), smaller: plain(d.lr / 10),
                       loss: d.loss === null || d.loss === undefined ? "NaN" : plain(d.loss),
                       start: d.start ? plain(d.start) : "" };
      return (list.length > 1 ? `${r.label}: ` : "") + t(`learn_verdict_${d.reason}`, values);
    });
    box.textContent = sentences.join(" ");
    box.hidden = !sentences.length;
  }

  for (const [name, chart] of Object.entries(charts)) {
    const tip = $("chart-tip");
    chart.canvas.addEventListener("pointermove", (e) => {
      const hit = chart.nearest(e.clientX, e.clientY);
      if (!hit) { tip.hidden = true; return; }
      const p = hit.point.p;
      const value = name === "acc" ? `${number(100 * hit.point.y, 1)}%` : number(hit.point.y, 3);
      tip.textContent = t("learn_tip", { series: hit.series.label, value, step: p.step, epoch: p.epoch,
                                        batch: p.batch !== undefined ? p.batch : "–" });
      tip.hidden = false;
    });
    chart.canvas.addEventListener("pointerleave", () => { tip.hidden = true; });
  }

  function drawStats(run) {
    const table = $("learn-stats");
    table.textContent = "";
    const look = run && run.look;
    if (!look) return;
    const head = table.insertRow();
    for (const key of ["learn_layer", "learn_grad", "learn_ratio"]) head.appendChild(document.createElement("th")).textContent = t(key);
    for (const l of look.layers) {
      const row = table.insertRow();
      row.insertCell().textContent = `${l.name} (${l.shape.join("×")})`;
      row.insertCell().textContent = l.grad_norm === null ? "–" : sci(l.grad_norm);
      const ratio = row.insertCell();
      ratio.textContent = l.update_ratio === null ? "–" : sci(l.update_ratio);
      ratio.classList.toggle("warn", l.update_ratio !== null && (l.update_ratio > 0.1 || l.update_ratio < 1e-6));
    }
    if (look.dead.length) {
      const dhead = table.insertRow();
      for (const key of ["learn_activation_layer", "learn_units", "learn_dead"]) dhead.appendChild(document.createElement("th")).textContent = t(key);
      for (const d of look.dead) {
        const row = table.insertRow();
        row.insertCell().textContent = d.name;
        row.insertCell().textContent = number(d.units);
        const dead = row.insertCell();
        dead.textContent = `${number(d.dead)} (${number(100 * d.share, 0)}%)`;
        dead.classList.toggle("warn", d.share > 0.5);
      }
    }
  }

  // a number for a sentence: three significant digits, 1e+9 style when very large or small,
  // with the reader's decimal mark
  function plain(v) {
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) {
      const text = Number(v).toExponential(2).replace(/\.?0+e/, "e");
      return window.sifirI18n.lang === "tr" ? text.replace(".", ",") : text;
    }
    return Number(v).toLocaleString(window.sifirI18n.lang, { maximumSignificantDigits: 3 });
  }

  function sci(v) {
    if (v === 0) return "0";
    return Math.abs(v) >= 0.01 && Math.abs(v) < 1000 ? number(v, 3) : v.toExponential(1).replace("e", "·10^").replace("+", "");
  }

  function drawEpoch(run) {
    const epoch = run && run.epochs.length ? run.epochs[run.epochs.length - 1] : null;
    D.confusion($("learn-confusion"), epoch, {
      cell: (i, j, n) => t("learn_cell", { truth: i, read: j, count: n }),
      digit: (d, p) => t("learn_digit_accuracy", { digit: d, percent: p === null ? "–" : number(100 * p, 1) }),
    });
    const fill = (id, list, caption) => {
      const box = $(id);
      box.textContent = "";
      for (const m of list || []) box.appendChild(D.digit(m.image, caption(m), `#${m.index}`));
    };
    fill("learn-mistakes", epoch && epoch.mistakes, (m) => `${m.true}→${m.pred}`);
    const changed = epoch && epoch.changed;
    fill("learn-right", changed && changed.right.images, (m) => `${m.true}`);
    fill("learn-wrong", changed && changed.wrong.images, (m) => `${m.true}→${m.pred}`);
    $("learn-right-title").textContent = changed && run.epochs.length > 1 ? t("learn_became_right", { count: number(changed.right.count) }) : "";
    $("learn-wrong-title").textContent = changed && run.epochs.length > 1 ? t("learn_became_wrong", { count: number(changed.wrong.count) }) : "";
  }

  // -- the learner's own digit -------------------------------------------------------------------------------
  const pinPad = $("pin-pad"), pinInk = pinPad.getContext("2d");
  const pinBars = [];
  for (let d = 0; d < 10; d++) {
    const bar = document.createElement("div");
    bar.className = "pbar";
    bar.dataset.digit = String(d);
    bar.innerHTML = '<span class="pct"></span><div class="pfill"></div><span>' + d + "</span>";
    $("pin-bars").appendChild(bar);
    pinBars.push(bar);
  }

  function blankPin() {
    pinInk.fillStyle = "#000";
    pinInk.fillRect(0, 0, pinPad.width, pinPad.height);
  }

  let pinStroke = null;
  const pinPoint = (e) => {
    const box = pinPad.getBoundingClientRect();
    return { x: (e.clientX - box.left) * (pinPad.width / box.width), y: (e.clientY - box.top) * (pinPad.height / box.height) };
  };
  function pinLine(a, b) {
    pinInk.strokeStyle = "#fff"; pinInk.lineWidth = pinPad.width / 14; pinInk.lineCap = "round"; pinInk.lineJoin = "round";
    pinInk.beginPath(); pinInk.moveTo(a.x, a.y); pinInk.lineTo(b.x, b.y); pinInk.stroke();
  }
  pinPad.addEventListener("pointerdown", (e) => {
    e.preventDefault();
    pinPad.setPointerCapture(e.pointerId);
    pinStroke = pinPoint(e);
    pinLine(pinStroke, pinStroke);
  });
  pinPad.addEventListener("pointermove", (e) => {
    if (!pinStroke) return;
    const p = pinPoint(e);
    pinLine(pinStroke, p);
    pinStroke = p;
  });
  const endPin = () => { if (pinStroke) { pinStroke = null; sendPin(pinPad.toDataURL("image/png")); } };
  pinPad.addEventListener("pointerup", endPin);
  pinPad.addEventListener("pointercancel", endPin);
  $("pin-clear").addEventListener("click", () => { blankPin(); sendPin(null); });

  async function sendPin(image) {
    pinImage = image;
    for (const run of [mine("A"), mine("B")].filter(live)) {
      try { await api("POST", `/api/learn/runs/${run.id}/pin`, { image }); } catch (err) { showError(err); }
    }
  }

  function drawPin(run) {
    const p = run && run.pin && run.pin.pin;
    pinBars.forEach((bar, d) => {
      const v = p ? p[d] : 0;
      bar.dataset.p = String(v);
      bar.classList.toggle("top", !!p && v === Math.max(...p));
      bar.querySelector(".pfill").style.height = `${(100 * v).toFixed(1)}%`;
      bar.querySelector(".pct").textContent = p ? `${Math.round(100 * v)}` : "";
      bar.title = p ? `${d}: ${number(100 * v, 1)}%` : "";
    });
  }

  // -- start -----------------------------------------------------------------------------------------------
  async function init() {
    blankPin();
    try {
      info = await api("GET", "/api/learn");
      room = info.room;
      allowed = true;
      readURL();
      connect();
    } catch (err) {
      allowed = false;
      readURLWithoutInfo();
      if (err.code !== "bad_token") showError(err);
    }
    writeURL();
    const q = new URLSearchParams(location.search);
    let view = q.get("view");
    if (!view) {   // no model to draw with yet: the Learn view is where to begin
      const answer = await fetch("/api/model").catch(() => null);
      view = answer && answer.status === 404 ? "learn" : "draw";
    }
    showView(view === "learn" ? "learn" : "draw", false);
    render();
  }

  function readURLWithoutInfo() {
    const q = new URLSearchParams(location.search);
    for (const name of URL_FIELDS) if (q.has(name) && field(name).type !== "checkbox") field(name).value = q.get(name);
    showFields();
  }

  window.sifirI18n.ready.then(init);
  window.sifirI18n.onChange(() => render());
})();
