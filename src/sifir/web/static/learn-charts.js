// The Learn view's pictures, drawn on canvases from the small figures the server streams:
// line charts with hover, first-layer weights in red and blue, the confusion matrix, digits.
"use strict";

window.sifirLearnDraw = (() => {
  const PAD = { left: 44, right: 10, top: 10, bottom: 24 };

  // -- a line chart: x is the number of updates (batches) so far, y a loss or an accuracy ----------
  class Chart {
    constructor(canvas, { yMax = null, cap = Infinity, percent = false } = {}) {
      this.canvas = canvas;
      this.fixedMax = yMax;      // accuracy: 1
      this.cap = cap;            // loss: the axis stops here, higher points sit on its edge
      this.percent = percent;
      this.series = [];
      this.xMax = 1;
      this.epochSteps = 0;
      this.marks = [];           // {x, label}: a diverged run's verdict on the curve
    }

    set(series, xMax, epochSteps, marks = []) {
      this.series = series;
      this.xMax = Math.max(1, xMax);
      this.epochSteps = epochSteps;
      this.marks = marks;
      // what is drawn, for whoever checks the page (and its tests): points and lines with points
      this.canvas.dataset.points = String(series.reduce((n, s) => n + s.points.length, 0));
      this.canvas.dataset.series = String(series.filter((s) => s.points.length).length);
      this.draw();
    }

    yTop() {
      if (this.fixedMax !== null) return this.fixedMax;
      let top = 0;
      for (const s of this.series) for (const p of s.points) if (p.y !== null && p.y < this.cap) top = Math.max(top, p.y);
      const anyOver = this.series.some((s) => s.points.some((p) => p.y !== null && p.y >= this.cap));
      return anyOver ? this.cap : Math.max(0.5, Math.ceil(top * 1.15 * 2) / 2);
    }

    place(p, top) {
      const c = this.canvas;
      const w = c.width - PAD.left - PAD.right, h = c.height - PAD.top - PAD.bottom;
      const y = Math.min(p.y, top);
      return [PAD.left + (p.x / this.xMax) * w, PAD.top + h - (y / top) * h];
    }

    draw() {
      const c = this.canvas, g = c.getContext("2d");
      const top = this.yTop();
      this.top = top;
      g.clearRect(0, 0, c.width, c.height);
      g.font = "11px system-ui, sans-serif";
      g.fillStyle = "#667085";
      g.strokeStyle = "#e4e7ef";
      g.lineWidth = 1;
      for (let i = 0; i <= 4; i++) {   // horizontal grid and the y labels
        const v = (top * i) / 4;
        const [, y] = this.place({ x: 0, y: v }, top);
        g.beginPath(); g.moveTo(PAD.left, y); g.lineTo(c.width - PAD.right, y); g.stroke();
        const text = this.percent ? `${Math.round(v * 100)}%` : v.toFixed(top <= 4 ? 2 : 1);
        g.fillText(text, 4, y + 4);
      }
      if (this.epochSteps > 0) {       // a line at each epoch's end
        g.strokeStyle = "#cfd4e2";
        for (let e = this.epochSteps, k = 1; e <= this.xMax + 0.5; e += this.epochSteps, k++) {
          const [x] = this.place({ x: e, y: 0 }, top);
          g.setLineDash([2, 3]); g.beginPath(); g.moveTo(x, PAD.top); g.lineTo(x, c.height - PAD.bottom); g.stroke();
          g.setLineDash([]);
          if (this.xMax / this.epochSteps <= 20) g.fillText(String(k), x - 3, c.height - 8);
        }
      }
      for (const s of this.series) {
        g.strokeStyle = s.color;
        g.fillStyle = s.color;
        g.lineWidth = s.width || 1.5;
        g.setLineDash(s.dash || []);
        if (!s.dots) {
          g.beginPath();
          let started = false;
          for (const p of s.points) {
            if (p.y === null) continue;
            const [x, y] = this.place(p, top);
            if (started) g.lineTo(x, y); else { g.moveTo(x, y); started = true; }
          }
          g.stroke();
        } else {
          for (const p of s.points) {
            if (p.y === null) continue;
            const [x, y] = this.place(p, top);
            g.beginPath(); g.arc(x, y, 3.5, 0, 2 * Math.PI); g.fill();
          }
        }
        g.setLineDash([]);
      }
      for (const m of this.marks) {    // the verdict: a red cross where it diverged
        const [x, y] = this.place({ x: m.x, y: top }, top);
        g.strokeStyle = "#b42318"; g.lineWidth = 2.5;
        g.beginPath(); g.moveTo(x - 6, y + 2); g.lineTo(x + 6, y + 14); g.moveTo(x + 6, y + 2); g.lineTo(x - 6, y + 14); g.stroke();
        g.fillStyle = "#b42318";
        g.fillText(m.label, Math.min(x + 9, c.width - 90), y + 12);
      }
    }

    // the point nearest to (clientX, clientY), within a few pixels: {series, point}
    nearest(clientX, clientY) {
      const c = this.canvas, box = c.getBoundingClientRect();
      const px = (clientX - box.left) * (c.width / box.width), py = (clientY - box.top) * (c.height / box.height);
      let best = null, bestD = 18 * 18;
      for (const s of this.series) {
        for (const p of s.points) {
          if (p.y === null) continue;
          const [x, y] = this.place(p, this.top || 1);
          const d = (x - px) ** 2 + (y - py) ** 2;
          if (d < bestD) { bestD = d; best = { series: s, point: p }; }
        }
      }
      return best;
    }
  }

  // -- weights as pictures: int8 per picture, −127 blue … 0 white … 127 red -----------------------
  function decode(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function templates(box, first, titleOf) {
    if (!first) { box.textContent = ""; return; }
    const [n, h, w] = first.shape;
    const bytes = new Int8Array(decode(first.data).buffer);
    if (box.childElementCount !== n || box.dataset.size !== `${h}x${w}`) {
      box.textContent = "";
      box.dataset.size = `${h}x${w}`;
      box.classList.toggle("many", n > 10);
      for (let i = 0; i < n; i++) {
        const canvas = document.createElement("canvas");
        canvas.width = w; canvas.height = h;
        box.appendChild(canvas);
      }
    }
    [...box.children].forEach((canvas, i) => {
      canvas.title = titleOf(i);
      const g = canvas.getContext("2d");
      const image = g.createImageData(w, h);
      for (let k = 0; k < w * h; k++) {
        const v = bytes[i * w * h + k] / 127;   // red positive, blue negative, white is zero
        const r = v > 0 ? 255 : Math.round(255 * (1 + v)), b = v < 0 ? 255 : Math.round(255 * (1 - v));
        const gr = Math.round(255 * (1 - Math.abs(v)));
        image.data.set([r, gr, b, 255], 4 * k);
      }
      g.putImageData(image, 0, 0);
    });
  }

  function digit(b64, caption, title) {
    const figure = document.createElement("figure");
    const canvas = document.createElement("canvas");
    canvas.width = 28; canvas.height = 28;
    const g = canvas.getContext("2d"), image = g.createImageData(28, 28), grey = decode(b64);
    for (let k = 0; k < 784; k++) image.data.set([grey[k], grey[k], grey[k], 255], 4 * k);
    g.putImageData(image, 0, 0);
    const text = document.createElement("figcaption");
    text.textContent = caption;
    figure.title = title;
    figure.append(canvas, text);
    return figure;
  }

  function confusion(table, epoch, labels) {
    table.textContent = "";
    if (!epoch) return;
    const head = table.insertRow();
    head.appendChild(document.createElement("th")).textContent = "";
    for (let j = 0; j < 10; j++) head.appendChild(document.createElement("th")).textContent = String(j);
    const c = epoch.confusion;
    epoch.confusion.forEach((row, i) => {
      const tr = table.insertRow();
      tr.appendChild(document.createElement("th")).textContent = String(i);
      const total = row.reduce((a, b) => a + b, 0) || 1;
      row.forEach((count, j) => {
        const td = tr.insertCell();
        td.textContent = String(count);
        const share = count / total;
        // the diagonal in the accent, mistakes in red; a square root lifts the small counts
        const alpha = Math.min(1, Math.sqrt(share)).toFixed(3);
        td.style.backgroundColor = i === j ? `rgba(81, 70, 229, ${alpha})` : (count ? `rgba(220, 60, 40, ${alpha})` : "");
        td.style.color = share > 0.45 ? "#fff" : "";
        td.title = labels.cell(i, j, count);
      });
    });
    const acc = table.insertRow();
    acc.className = "acc";
    acc.appendChild(document.createElement("th")).textContent = "%";
    epoch.per_digit.forEach((p, d) => {
      const td = acc.insertCell();
      td.textContent = p === null ? "–" : String(Math.round(100 * p));
      td.title = labels.digit(d, p);
    });
    return c;
  }

  return { Chart, templates, digit, confusion, decode };
})();
