// sifir's drawing page: draw (or upload, or photograph) digits, post them to /api/predict, show
// what comes back (photo.js shows the digits found in a picture).
"use strict";

(() => {
  const SEND_EVERY_MS = 100;     // while drawing, at most one picture per 100 ms
  const MAX_UPLOAD_BYTES = 1400000;   // the server takes 2 MB of JSON; base64 adds a third
  const MAX_UPLOAD_SIDE = 1024;  // bigger pictures are shrunk here first (a digit needs far less)
  const MAX_MAPS = 64;           // feature maps drawn per layer

  const $ = (id) => document.getElementById(id);
  const pad = $("pad");
  const ink = pad.getContext("2d");
  const seen = $("seen");
  const digitEl = $("digit");
  const statusEl = $("status");
  const confidenceEl = $("confidence");
  const hintEl = $("pad-hint");
  const { t, number } = window.sifirI18n;

  // -- drawing -----------------------------------------------------------------------------------
  // MNIST strokes are about 2 px wide in 28 px, so the pen is 1/14 of the canvas.
  const PEN = pad.width / 14;
  let hasInk = false;        // something drawn since the last clear
  let stroke = null;         // the last point of the stroke in progress
  let showingUpload = false; // the pad shows an uploaded picture, not a drawing

  function blank() {
    ink.fillStyle = "#000";
    ink.fillRect(0, 0, pad.width, pad.height);
    hasInk = false;
    showingUpload = false;
  }

  function pointOf(event) {
    // the canvas is drawn at its own 280×280 resolution, whatever size CSS shows it at
    const box = pad.getBoundingClientRect();
    return {
      x: (event.clientX - box.left) * (pad.width / box.width),
      y: (event.clientY - box.top) * (pad.height / box.height),
    };
  }

  function line(from, to) {
    ink.strokeStyle = "#fff";
    ink.fillStyle = "#fff";
    ink.lineWidth = PEN;
    ink.lineCap = "round";
    ink.lineJoin = "round";
    ink.beginPath();
    ink.moveTo(from.x, from.y);
    ink.lineTo(to.x, to.y);
    ink.stroke();
  }

  pad.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "mouse" && event.button !== 0) return;
    event.preventDefault();
    if (showingUpload) { generation += 1; blank(); window.sifirPhoto.hide(); }   // an answer still coming is for the upload
    pad.setPointerCapture(event.pointerId);
    stroke = pointOf(event);
    line(stroke, stroke);    // a tap leaves a dot
    hasInk = true;
    hintEl.classList.add("hidden");
  });

  pad.addEventListener("pointermove", (event) => {
    if (!stroke) return;
    event.preventDefault();
    // coalesced events carry the points a fast pen passed between two frames
    const points = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of points.length ? points : [event]) {
      const p = pointOf(e);
      line(stroke, p);
      stroke = p;
    }
    if (performance.now() - lastSent >= SEND_EVERY_MS) send();
  });

  function endStroke(event) {
    if (!stroke) return;
    stroke = null;
    if (pad.hasPointerCapture(event.pointerId)) pad.releasePointerCapture(event.pointerId);
    send();
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  $("clear").addEventListener("click", () => {
    generation += 1;     // answers still on their way belong to the old drawing
    blank();
    hintEl.classList.remove("hidden");
    showNothing(t("draw_prompt"));
    window.sifirPhoto.hide();
  });

  // -- talking to the server ------------------------------------------------------------------------
  let lastSent = 0;
  let busy = false;       // one request at a time; the newest drawing goes next
  let queued = null;      // {image, generation} waiting for the request in flight
  let generation = 0;     // bumped by clear and upload, so answers to older pictures are dropped

  function send() {
    if (!hasInk) return;
    lastSent = performance.now();
    post(pad.toDataURL("image/png"));
  }

  async function post(image) {
    if (busy) { queued = { image, generation }; return; }
    busy = true;
    const mine = generation;
    try {
      const response = await fetch("/api/predict", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ image }),
      });
      const answer = await response.json().catch(() => ({ error: t("server_answered", { status: response.status }) }));
      if (mine !== generation) return;
      if (response.ok) { show(answer); showDigitsFound(answer); }
      else if (answer.code === "no_digit" && showingUpload) { showNothing(t("photo.none")); window.sifirPhoto.none("photo.none", uploaded); }
      else if (answer.code === "no_digit") { showNothing(t("draw_prompt")); window.sifirPhoto.hide(); }
      else if (answer.code === "too_many_digits") { showError(t("photo.too_many")); window.sifirPhoto.none("photo.too_many", showingUpload ? uploaded : pad); }
      else showError(answer.error || t("server_answered", { status: response.status }));
    } catch (err) {
      if (mine === generation) showError(t("unreachable"));
    } finally {
      busy = false;
      const next = queued;
      queued = null;
      if (next && next.generation === generation) post(next.image);
    }
  }

  // -- uploading a picture or taking a photo -----------------------------------------------------------
  let uploaded = null;    // the picture last uploaded, for photo.js to draw the digits' boxes on

  async function upload(event) {
    const file = event.target.files[0];
    event.target.value = "";     // choosing the same file again fires another change
    if (!file) return;
    generation += 1;
    window.sifirPhoto.hide();
    try {
      const picture = await loadPicture(file);
      preview(picture);
      uploaded = picture;
      post(await pictureData(file, picture));
    } catch (err) {
      showError(t("not_a_picture", { name: file.name }));
    }
  }
  $("file").addEventListener("change", upload);
  $("camera").addEventListener("change", upload);   // capture: a phone opens its camera

  // an upload's digits, or a drawing's when it holds more than one, with their boxes
  function showDigitsFound(answer) {
    if (showingUpload) window.sifirPhoto.show(answer, uploaded);
    else if (answer.digits.length > 1) window.sifirPhoto.show(answer, pad);
    else window.sifirPhoto.hide();
  }

  function loadPicture(file) {
    return new Promise((resolve, reject) => {
      const url = URL.createObjectURL(file);
      const img = new Image();
      img.onload = () => { URL.revokeObjectURL(url); resolve(img); };
      img.onerror = () => { URL.revokeObjectURL(url); reject(new Error("not a picture")); };
      img.src = url;
    });
  }

  function preview(img) {
    // fit the picture into the pad, on white (most photos are dark ink on light paper)
    blank();
    const scale = Math.min(pad.width / img.naturalWidth, pad.height / img.naturalHeight);
    const w = img.naturalWidth * scale, h = img.naturalHeight * scale;
    ink.fillStyle = "#fff";
    ink.fillRect((pad.width - w) / 2, (pad.height - h) / 2, w, h);
    ink.drawImage(img, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    showingUpload = true;
    hintEl.classList.add("hidden");
  }

  function pictureData(file, img) {
    // small pictures go as they are, so the server reads the very same bytes as `sifir predict`
    const side = Math.max(img.naturalWidth, img.naturalHeight);
    if (file.size <= MAX_UPLOAD_BYTES && side <= MAX_UPLOAD_SIDE) {
      return new Promise((resolve, reject) => {
        const reader = new FileReader();
        reader.onload = () => resolve(reader.result);
        reader.onerror = () => reject(reader.error);
        reader.readAsDataURL(file);
      });
    }
    const scale = Math.min(1, MAX_UPLOAD_SIDE / side);
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(img.naturalWidth * scale));
    canvas.height = Math.max(1, Math.round(img.naturalHeight * scale));
    const c = canvas.getContext("2d");
    c.fillStyle = "#fff";
    c.fillRect(0, 0, canvas.width, canvas.height);
    c.drawImage(img, 0, 0, canvas.width, canvas.height);
    return Promise.resolve(canvas.toDataURL("image/jpeg", 0.92));
  }

  // -- showing the answer -----------------------------------------------------------------------------
  // one bar per class, named as the model's data set names them (GET /api/model: "classes")
  let bars = [];
  let classes = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
  function buildBars(names) {
    classes = names;
    const box = $("bars");
    box.replaceChildren();
    box.style.gridTemplateColumns = `repeat(${names.length}, 1fr)`;
    box.classList.toggle("names", names.some((name) => name.length > 1));
    bars = names.map((name, d) => {
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.setAttribute("role", "listitem");
      bar.dataset.digit = d;
      bar.dataset.p = "0";
      bar.innerHTML = '<div class="track"><div class="fill"></div></div>' +
                      '<span class="label"></span><span class="pct"></span>';
      bar.querySelector(".label").textContent = name;
      box.appendChild(bar);
      return bar;
    });
  }
  buildBars(classes);

  let shown = null;   // the answer on screen, drawn again when the language changes

  function show(answer) {
    shown = answer;
    const p = answer.probabilities;
    const name = classes[answer.digit] ?? String(answer.digit);
    digitEl.textContent = name;
    digitEl.classList.toggle("word", name.length > 2);
    statusEl.textContent = t("reads", { digit: name });
    statusEl.classList.remove("error");
    confidenceEl.textContent = t("sure", { percent: number(100 * p[answer.digit], 1) });
    bars.forEach((bar, d) => {
      bar.dataset.p = String(p[d]);
      bar.classList.toggle("winner", d === answer.digit);
      bar.querySelector(".fill").style.height = `${(100 * p[d]).toFixed(1)}%`;
      bar.querySelector(".pct").textContent = `${Math.round(100 * p[d])}%`;
      bar.title = `${classes[d]}: ${(100 * p[d]).toFixed(2)}%`;
    });
    drawInput(answer.input);
    showLayers(answer.activations);
  }

  function showNothing(message) {
    shown = null;
    digitEl.textContent = "";
    statusEl.textContent = message;
    statusEl.classList.remove("error");
    confidenceEl.textContent = "";
    bars.forEach((bar) => {
      bar.dataset.p = "0";
      bar.classList.remove("winner");
      bar.querySelector(".fill").style.height = "0";
      bar.querySelector(".pct").textContent = "";
      bar.title = "";
    });
    drawInput(null);
    showLayers(null);
  }

  function showError(message) {
    showNothing(message);
    statusEl.classList.add("error");
  }

  function drawInput(rows) {
    // the 28×28 input: each value in [0, 1] becomes a grey level, bright ink on black
    const c = seen.getContext("2d");
    const image = c.createImageData(28, 28);
    for (let i = 0; i < 784; i++) {
      const v = rows ? Math.round(255 * rows[Math.floor(i / 28)][i % 28]) : 0;
      image.data.set([v, v, v, 255], 4 * i);
    }
    c.putImageData(image, 0, 0);
  }

  // -- hidden layers: a cell per neuron, or a small grey picture per feature map --------------------------
  const layersEl = $("layers");
  let layerViews = [];   // one per hidden layer, built from /api/model

  function buildLayers(hidden) {
    layersEl.textContent = "";
    layerViews = hidden.map((h) => {
      const box = document.createElement("div");
      box.className = "layer";
      box.dataset.name = h.name;
      const title = document.createElement("p");
      title.className = "layer-title";
      const count = h.shape.reduce((a, b) => a * b, 1);
      const name = document.createElement("b");
      name.textContent = h.name;
      title.append(name, ` · ${h.layer} · ` + (h.shape.length === 1
        ? t("neurons", { count }) : t("feature_maps", { count: h.shape[0], size: h.shape.slice(1).join("×") })));
      box.appendChild(title);
      const view = { shape: h.shape, cells: [], maps: [] };
      if (h.shape.length === 1) {
        const grid = document.createElement("div");
        grid.className = count > 40 ? "cells many" : "cells";
        for (let i = 0; i < count; i++) {
          const cell = document.createElement("div");
          cell.className = "cell";
          cell.title = t("neuron_value", { n: i + 1, value: 0 });
          grid.appendChild(cell);
          view.cells.push(cell);
        }
        box.appendChild(grid);
      } else {
        const [channels, height, width] = h.shape.length === 3 ? h.shape : [1, ...h.shape];
        const maps = document.createElement("div");
        maps.className = "maps";
        for (let i = 0; i < Math.min(channels, MAX_MAPS); i++) {
          const canvas = document.createElement("canvas");
          canvas.width = width;
          canvas.height = height;
          canvas.title = t("map", { n: i + 1 });
          maps.appendChild(canvas);
          view.maps.push(canvas);
        }
        box.appendChild(maps);
        if (channels > MAX_MAPS) {
          const more = document.createElement("p");
          more.className = "more";
          more.textContent = t("first_maps", { shown: MAX_MAPS, count: channels });
          box.appendChild(more);
        }
      }
      layersEl.appendChild(box);
      return view;
    });
  }

  function showLayers(activations) {
    layerViews.forEach((view, k) => {
      const a = activations && activations[k];
      const flat = a ? [a.values].flat(Infinity) : [];
      // brightness relative to the layer's strongest neuron, so quiet layers still show a pattern
      const top = flat.reduce((m, v) => Math.max(m, Math.abs(v)), 0) || 1;
      view.cells.forEach((cell, i) => {
        const v = flat[i] || 0;
        cell.style.backgroundColor = v > 0 ? `rgba(var(--glow), ${Math.max(0.12, v / top).toFixed(3)})` : "";
        cell.classList.toggle("lit", v > 0);
        cell.title = t("neuron_value", { n: i + 1, value: number(v, 3) });
      });
      const size = view.maps.length ? view.maps[0].width * view.maps[0].height : 0;
      view.maps.forEach((canvas, m) => {
        const c = canvas.getContext("2d");
        const image = c.createImageData(canvas.width, canvas.height);
        for (let i = 0; i < size; i++) {
          const v = Math.round(255 * Math.max(0, flat[m * size + i] || 0) / top);
          image.data.set([v, v, v, 255], 4 * i);
        }
        c.putImageData(image, 0, 0);
      });
    });
  }

  // -- start -----------------------------------------------------------------------------------------
  async function loadModel() {
    const modelEl = $("model");
    try {
      const response = await fetch("/api/model");
      const model = await response.json();
      if (response.status === 404) {   // no model yet: the Learn view trains one
        modelEl.textContent = t("no_model_yet");
        buildLayers([]);
        return;
      }
      const info = model.info || {};
      const parts = [info.preset ? t("model_named", { name: info.preset }) : model.file,
                     t("weights", { count: number(model.parameters.weights) })];
      if (typeof info.test_accuracy === "number") {
        const dataset = (model.dataset && model.dataset.title) || "MNIST";
        parts.push(t("test_accuracy", { percent: number(100 * info.test_accuracy, 1), dataset }));
      }
      if (model.ensemble) parts.push(t("ensemble", { count: number(model.ensemble) }));
      if (model.views > 1) parts.push(t("views", { count: number(model.views) }));
      modelEl.textContent = parts.join(" · ");
      if (Array.isArray(model.classes) && model.classes.join("\n") !== classes.join("\n")) {
        buildBars(model.classes);
      }
      buildLayers(model.hidden || []);
      showLayers(null);
    } catch (err) {
      modelEl.textContent = t("no_server");
    }
  }

  blank();
  drawInput(null);
  window.sifirI18n.ready.then(() => { showNothing(t("draw_prompt")); loadModel(); });
  window.addEventListener("sifir:model-changed", () => {   // the Learn view handed over its weights
    generation += 1;
    loadModel().then(() => { if (hasInk) send(); else showNothing(t("draw_prompt")); });
  });
  window.sifirI18n.onChange(async () => {   // sentences built here are built again in the new language
    const answer = shown;
    await loadModel();
    if (answer) show(answer);
    else if (!statusEl.classList.contains("error")) showNothing(t("draw_prompt"));
  });
})();
