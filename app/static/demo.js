// Demo page: draw on a canvas, shrink to the 8x8 grid of scikit-learn's digits, predict.
// scikit-learn's digits are 32x32 bitmaps of centred digits, counted in 4x4 blocks (0..16);
// we do the same: crop the strokes, centre them in a square, resample to 32x32, count.
(() => {
  "use strict";
  const pad = document.getElementById("pad");
  const ctx = pad.getContext("2d", { willReadFrequently: true });
  const grid = document.getElementById("grid");
  const gctx = grid.getContext("2d");
  const errorBox = document.getElementById("error");
  const keyBox = document.getElementById("key-box");
  const keyInput = document.getElementById("api-key");
  let model = "digits";
  let drawing = false;
  let last = null;
  let timer = null;

  function clearPad() {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, pad.width, pad.height);
    gctx.clearRect(0, 0, grid.width, grid.height);
    document.getElementById("digit").textContent = "\u2013";
    document.getElementById("confidence").textContent = "";
    document.getElementById("probs").innerHTML = "";
    errorBox.textContent = "";
  }

  function point(ev) {
    const r = pad.getBoundingClientRect();
    return { x: (ev.clientX - r.left) * pad.width / r.width, y: (ev.clientY - r.top) * pad.height / r.height };
  }

  pad.addEventListener("pointerdown", (ev) => { drawing = true; last = point(ev); pad.setPointerCapture(ev.pointerId); stroke(ev); });
  pad.addEventListener("pointermove", (ev) => { if (drawing) stroke(ev); });
  ["pointerup", "pointercancel"].forEach((t) => pad.addEventListener(t, () => { drawing = false; schedule(); }));

  function stroke(ev) {
    const p = point(ev);
    ctx.strokeStyle = "#000"; ctx.lineWidth = 18; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(last.x, last.y); ctx.lineTo(p.x, p.y); ctx.stroke();
    last = p;
  }

  function schedule() { clearTimeout(timer); timer = setTimeout(predict, 150); }

  function toGrid() {
    const { data, width, height } = ctx.getImageData(0, 0, pad.width, pad.height);
    let minX = width, minY = height, maxX = -1, maxY = -1;
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
      if (data[(y * width + x) * 4] < 128) { minX = Math.min(minX, x); maxX = Math.max(maxX, x); minY = Math.min(minY, y); maxY = Math.max(maxY, y); }
    }
    if (maxX < 0) return null;
    const side = Math.max(maxX - minX, maxY - minY) + 1;
    const margin = side * 0.15;
    const size = side + 2 * margin;
    const cx = (minX + maxX) / 2, cy = (minY + maxY) / 2;
    const cells = [];
    for (let r = 0; r < 8; r++) {
      const row = [];
      for (let c = 0; c < 8; c++) {
        let ink = 0;
        for (let dy = 0; dy < 4; dy++) for (let dx = 0; dx < 4; dx++) {
          const sx = Math.floor(cx - size / 2 + ((c * 4 + dx + 0.5) / 32) * size);
          const sy = Math.floor(cy - size / 2 + ((r * 4 + dy + 0.5) / 32) * size);
          if (sx >= 0 && sy >= 0 && sx < width && sy < height && data[(sy * width + sx) * 4] < 128) ink++;
        }
        row.push(ink);
      }
      cells.push(row);
    }
    return cells;
  }

  function showGrid(cells) {
    const s = grid.width / 8;
    cells.forEach((row, r) => row.forEach((v, c) => {
      const shade = Math.round(255 - (v / 16) * 255);
      gctx.fillStyle = `rgb(${shade},${shade},${shade})`;
      gctx.fillRect(c * s, r * s, s, s);
    }));
  }

  function showProbs(probs) {
    const table = document.getElementById("probs");
    table.innerHTML = "";
    probs.forEach((p, i) => {
      const tr = table.insertRow();
      tr.insertCell().textContent = String(i);
      const bar = document.createElement("div");
      bar.className = "bar"; bar.style.width = `${Math.max(1, p * 160)}px`;
      tr.insertCell().appendChild(bar);
      tr.insertCell().textContent = `${(p * 100).toFixed(1)}%`;
    });
  }

  async function predict() {
    const cells = toGrid();
    if (!cells) return;
    showGrid(cells);
    errorBox.textContent = "";
    const headers = { "Content-Type": "application/json" };
    if (keyInput.value) headers["x-api-key"] = keyInput.value;
    try {
      const res = await fetch(`/v1/models/${model}:predict`, { method: "POST", headers, body: JSON.stringify({ instances: [cells] }) });
      const body = await res.json();
      if (!res.ok) {
        if (res.status === 401) keyBox.hidden = false, keyBox.open = true;
        errorBox.textContent = `${res.status}: ${body.error}`;
        return;
      }
      const probs = body.predictions[0];
      const best = probs.indexOf(Math.max(...probs));
      document.getElementById("digit").textContent = String(best);
      document.getElementById("confidence").textContent = `(${(probs[best] * 100).toFixed(1)}%)`;
      showProbs(probs);
    } catch (err) {
      errorBox.textContent = `request failed: ${err}`;
    }
  }

  document.getElementById("clear").addEventListener("click", clearPad);
  document.getElementById("predict").addEventListener("click", predict);
  fetch("/readyz").then((r) => r.json()).then((s) => {
    if (s.model) { model = s.model; document.getElementById("model-name").textContent = model; document.getElementById("meta-link").href = `/v1/models/${model}/metadata`; }
  }).catch(() => {});
  clearPad();
})();
