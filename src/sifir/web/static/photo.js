// The Draw view's photo part: for an uploaded picture or photo (or a drawing of several digits),
// the picture with a box round each digit the server found, each digit's 28×28 input with what
// the network reads and how sure it is, and the number they make. app.js calls show / none / hide.
"use strict";

window.sifirPhoto = (() => {
  const MAX_VIEW = 720;   // the picture is drawn at most this wide or tall (CSS shrinks it further)
  const { t, number } = window.sifirI18n;
  const card = document.getElementById("photo");
  const view = document.getElementById("photo-view");
  const numberEl = document.getElementById("photo-number");
  const list = document.getElementById("photo-digits");
  let shown = null;       // what is on screen, drawn again when the language changes

  // answer: POST /api/predict's answer; picture: an <img> or <canvas> of what was sent
  function show(answer, picture) {
    shown = { answer, picture };
    card.hidden = false;
    numberEl.classList.remove("none");
    numberEl.textContent = t("photo.number", { number: answer.number });
    drawPicture(picture, answer.digits.map((d) => d.box), answer.size);
    list.textContent = "";
    answer.digits.forEach((d, i) => list.appendChild(tile(d, i)));
  }

  // a picture the server found no digit in (key: the sentence that says why)
  function none(key, picture) {
    shown = { key, picture };
    card.hidden = false;
    numberEl.classList.add("none");
    numberEl.textContent = t(key);
    drawPicture(picture, [], null);
    list.textContent = "";
  }

  function hide() {
    shown = null;
    card.hidden = true;
  }

  function drawPicture(picture, boxes, size) {
    const width = picture.naturalWidth || picture.width;
    const height = picture.naturalHeight || picture.height;
    const scale = Math.min(1, MAX_VIEW / Math.max(width, height));
    view.width = Math.max(1, Math.round(width * scale));
    view.height = Math.max(1, Math.round(height * scale));
    const c = view.getContext("2d");
    c.fillStyle = "#fff";
    c.fillRect(0, 0, view.width, view.height);
    c.drawImage(picture, 0, 0, view.width, view.height);
    if (!size) return;
    // boxes are in the pixels of the picture the server read (the page may have sent a smaller copy)
    const k = view.width / size[0];
    const line = Math.max(2, Math.round(view.width / 240));
    c.lineWidth = line;
    c.font = `bold ${Math.max(12, 6 * line)}px system-ui, sans-serif`;
    c.textBaseline = "bottom";
    boxes.forEach(([left, top, w, h], i) => {
      const x = left * k - line, y = top * k - line;
      c.strokeStyle = "rgb(255, 170, 0)";
      c.strokeRect(x, y, w * k + 2 * line, h * k + 2 * line);
      c.fillStyle = "rgb(255, 170, 0)";
      c.fillText(String(i + 1), x, Math.max(c.lineWidth * 6, y));
    });
  }

  function tile(d, i) {
    const item = document.createElement("li");
    const percent = number(100 * d.probabilities[d.digit], 0);
    item.title = t("photo.digit_title", { n: i + 1, digit: d.digit, percent });
    const no = document.createElement("span");
    no.className = "box-no";
    no.textContent = String(i + 1);
    const input = document.createElement("canvas");
    input.width = 28;
    input.height = 28;
    const c = input.getContext("2d");
    const image = c.createImageData(28, 28);
    for (let p = 0; p < 784; p++) {
      const v = Math.round(255 * d.input[Math.floor(p / 28)][p % 28]);
      image.data.set([v, v, v, 255], 4 * p);
    }
    c.putImageData(image, 0, 0);
    const read = document.createElement("span");
    read.className = "read";
    read.textContent = String(d.digit);
    const sure = document.createElement("span");
    sure.className = "sure";
    sure.textContent = t("sure", { percent });
    item.append(no, input, read, sure);
    return item;
  }

  window.sifirI18n.onChange(() => {
    if (shown && shown.answer) show(shown.answer, shown.picture);
    else if (shown) none(shown.key, shown.picture);
  });

  return { show, none, hide };
})();
