// Demo page: draw on a canvas (pointer or keyboard), shrink to the 8x8 grid of
// scikit-learn's digits, predict, and show the answer with the model version that gave it.
//
// scikit-learn's digits are 32x32 bitmaps counted in 4x4 blocks (0..16), and every one of the
// 1,797 images spans all 8 rows: the digit's height fills the frame. We do the same: crop the
// strokes to their bounding box, scale its longer side to the full 32 pixels, centre, count.
// (A margin around the digit shrinks it below what the model saw in training: with a 15 %
// margin, digits rendered from the data set's own images were recognised 6 times in 10.)
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const pad = $("pad");
  const ctx = pad.getContext("2d", { willReadFrequently: true });
  const grid = $("grid");
  const gctx = grid.getContext("2d");
  const pen = $("pen");
  const errorBox = $("error");
  const keyBox = $("key-box");
  const keyInput = $("api-key");
  const LINE_WIDTH = 18;
  const KEY_STEP = 8;          // canvas pixels per arrow key press; Shift: x4
  const AUTO_PREDICT_MS = 150; // after the pen lifts
  const TIMEOUT_MS = 10000;
  // The service's default model (the first in MODEL_URI): this page draws for it when its
  // input is an 8x8 grid; otherwise it says so instead of sending drawings it cannot take.
  let modelPath = "/v1/models/digits";  // then /v1/models/<name>/versions/<v>, from /readyz
  let unsupported = null;
  let last = null;             // pointer: where the current stroke is; null when not drawing
  const cursor = { x: pad.width / 2, y: pad.height / 2, down: false };  // keyboard pen
  let keysUsed = false;        // the pad has been drawn on with keys since it got focus
  let timer = null;
  let requestSeq = 0;          // a response is shown only if no newer request or Clear came since

  function showError(message) { errorBox.textContent = message; }

  // The last answer goes when the drawing is cleared or a newer request fails: an old answer
  // beside a new drawing would mislead.
  function clearResult() {
    $("digit").textContent = "\u2013";
    $("confidence").textContent = "";
    $("answered-by").textContent = "";
    $("probs").tBodies[0].replaceChildren();
  }

  function clearPad() {
    clearTimeout(timer);
    requestSeq++;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, pad.width, pad.height);
    gctx.clearRect(0, 0, grid.width, grid.height);
    clearResult();
    cursor.down = false;
    showPen();
    showError("");
  }

  // --- drawing ------------------------------------------------------------------------------
  function line(from, to) {
    ctx.strokeStyle = "#000"; ctx.lineWidth = LINE_WIDTH; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(from.x, from.y); ctx.lineTo(to.x, to.y); ctx.stroke();
  }

  function dot(p) {
    ctx.fillStyle = "#000";
    ctx.beginPath(); ctx.arc(p.x, p.y, LINE_WIDTH / 2, 0, 2 * Math.PI); ctx.fill();
  }

  // The canvas keeps 256x256 pixels whatever size CSS gives it: scale client coordinates.
  function point(ev) {
    const r = pad.getBoundingClientRect();
    return { x: (ev.clientX - r.left) * pad.width / r.width, y: (ev.clientY - r.top) * pad.height / r.height };
  }

  pad.addEventListener("pointerdown", (ev) => {
    if (!ev.isPrimary) return;            // a second finger does not draw
    clearTimeout(timer);
    last = point(ev);
    pad.setPointerCapture(ev.pointerId);
    dot(last);
  });
  pad.addEventListener("pointermove", (ev) => {
    if (!ev.isPrimary || last === null) return;
    const p = point(ev);
    line(last, p);
    last = p;
  });
  ["pointerup", "pointercancel"].forEach((type) => pad.addEventListener(type, (ev) => {
    if (!ev.isPrimary || last === null) return;
    last = null;
    schedule();
  }));
  // A finger lifted mid-stroke starts a fling gesture (touch-action: none stops the scroll,
  // not the gesture), and Chromium then spends the next tap, on Clear say, stopping it.
  // Consuming the pad's touch events ends the gesture on the pad; pointer events still come.
  ["touchstart", "touchmove", "touchend"].forEach((type) =>
    pad.addEventListener(type, (ev) => ev.preventDefault(), { passive: false }));

  const MOVES = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  const clamp = (v, hi) => Math.min(hi, Math.max(0, v));

  pad.addEventListener("keydown", (ev) => {
    keysUsed = true;
    if (ev.key in MOVES) {
      const step = KEY_STEP * (ev.shiftKey ? 4 : 1);
      const [dx, dy] = MOVES[ev.key];
      const next = { x: clamp(cursor.x + dx * step, pad.width), y: clamp(cursor.y + dy * step, pad.height) };
      if (cursor.down) line(cursor, next);
      cursor.x = next.x; cursor.y = next.y;
    } else if (ev.key === " ") {
      cursor.down = !cursor.down;
      if (cursor.down) { clearTimeout(timer); dot(cursor); } else schedule();
    } else if (ev.key === "Enter") {
      predict();
    } else if (ev.key === "Escape") {
      clearPad();
    } else {
      return;                               // Tab and everything else keep their meaning
    }
    ev.preventDefault();                    // no page scrolling on arrows and Space
    showPen();
  });
  pad.addEventListener("focus", showPen);
  pad.addEventListener("blur", () => { keysUsed = false; pen.hidden = true; });

  // The keyboard pen's position, drawn over the canvas (not on it: the grid reads its pixels),
  // shown while the pad has keyboard focus or is drawn on with keys (not after a mere click).
  function showPen() {
    pen.hidden = document.activeElement !== pad || !(keysUsed || pad.matches(":focus-visible"));
    pen.style.left = `${(cursor.x / pad.width) * 100}%`;
    pen.style.top = `${(cursor.y / pad.height) * 100}%`;
    pen.classList.toggle("down", cursor.down);
  }

  function schedule() { clearTimeout(timer); timer = setTimeout(predict, AUTO_PREDICT_MS); }

  // --- the 8x8 grid ---------------------------------------------------------------------------
  function toGrid() {
    const { data, width, height } = ctx.getImageData(0, 0, pad.width, pad.height);
    let minX = width, minY = height, maxX = -1, maxY = -1;
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
      if (data[(y * width + x) * 4] < 128) { minX = Math.min(minX, x); maxX = Math.max(maxX, x); minY = Math.min(minY, y); maxY = Math.max(maxY, y); }
    }
    if (maxX < 0) return null;
    const size = Math.max(maxX - minX, maxY - minY) + 1;
    const cx = (minX + maxX + 1) / 2, cy = (minY + maxY + 1) / 2;
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

  // --- the answer -----------------------------------------------------------------------------
  function showProbs(probs, best) {
    const body = $("probs").tBodies[0];
    body.replaceChildren();
    probs.forEach((p, i) => {
      const tr = body.insertRow();
      if (i === best) tr.className = "best";
      const label = document.createElement("th");
      label.scope = "row"; label.textContent = String(i);
      tr.appendChild(label);
      const track = document.createElement("div");
      track.className = "track";
      const bar = document.createElement("div");
      bar.className = "bar"; bar.style.width = `${p * 100}%`;
      track.appendChild(bar);
      tr.insertCell().appendChild(track);
      tr.insertCell().textContent = `${(p * 100).toFixed(1)}%`;
    });
  }

  // A readable sentence for a failed answer: the status, what to do, and the service's own
  // error text when it sent JSON (a proxy or load balancer in front may send HTML instead).
  function describeFailure(res, body) {
    const detail = body && typeof body.error === "string" ? `: ${body.error}` : "";
    const status = `${res.status}${res.statusText ? " " + res.statusText : ""}`;
    if (res.status === 401) return `The service needs an API key (${status}${detail}). Enter it under "API key" below, then press Predict.`;
    if (res.status === 413) return `The request was too large for the service (${status}${detail}).`;
    if (res.status === 429 || (res.status >= 502 && res.status <= 504)) return `The service is busy or unavailable (${status}${detail}). Try again in a moment.`;
    return `The service could not answer (${status}${detail}).`;
  }

  async function send(cells) {
    const headers = { "Content-Type": "application/json" };
    if (keyInput.value) headers["x-api-key"] = keyInput.value;
    const abort = new AbortController();
    const timeout = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const res = await fetch(`${modelPath}:predict`, {
        method: "POST", headers, body: JSON.stringify({ instances: [cells] }), signal: abort.signal,
      });
      const text = await res.text();
      let body = null;
      try { body = JSON.parse(text); } catch { /* not JSON: described by its status alone */ }
      return { res, body };
    } catch (err) {
      return {
        failure: err.name === "AbortError"
          ? `The service did not answer within ${TIMEOUT_MS / 1000} s. Try again in a moment.`
          : "Could not reach the service: it may be stopped or restarting. Check that it runs, then press Predict again.",
      };
    } finally {
      clearTimeout(timeout);
    }
  }

  async function predict() {
    clearTimeout(timer);
    if (unsupported) { showError(unsupported); return; }
    const cells = toGrid();
    if (!cells) { showError("Nothing to predict yet: draw a digit first."); return; }
    showGrid(cells);
    const mine = ++requestSeq;
    const { res, body, failure } = await send(cells);
    if (mine !== requestSeq) return;        // superseded by a newer request or by Clear
    const probs = res && res.ok && body && Array.isArray(body.predictions) ? body.predictions[0] : null;
    if (!Array.isArray(probs) || probs.length === 0) {
      clearResult();
      if (failure) {
        showError(failure);
      } else if (!res.ok) {
        if (res.status === 401) { keyBox.hidden = false; keyBox.open = true; }
        showError(describeFailure(res, body));
      } else {
        showError(`The service answered ${res.status} but not with predictions the page can read.`);
      }
      return;
    }
    showError("");
    const best = probs.indexOf(Math.max(...probs));
    $("digit").textContent = String(best);
    $("confidence").textContent = `(${(probs[best] * 100).toFixed(1)}%)`;
    const name = res.headers.get("X-Model-Name"), version = res.headers.get("X-Model-Version");
    $("answered-by").textContent = name ? `Answered by model ${name}, version ${version || "unknown"}.` : "";
    showProbs(probs, best);
  }

  $("clear").addEventListener("click", clearPad);
  $("predict").addEventListener("click", predict);
  fetch("/readyz").then(async (r) => {
    const s = await r.json();
    if (!r.ok) throw new Error(s.error || `${r.status}`);
    if (s.model) {
      const model = s.model, version = s.version || null;
      modelPath = `/v1/models/${encodeURIComponent(model)}` +
        (version === null ? "" : `/versions/${encodeURIComponent(version)}`);
      $("model-name").textContent = modelPath.slice("/v1/models/".length);
      $("meta-link").href = `${modelPath}/metadata`;
      const meta = await (await fetch(`${modelPath}/metadata`)).json();
      const inputs = meta.metadata.signature_def.signature_def.serving_default.inputs;
      const [name, input] = Object.entries(inputs)[0];
      const dims = input.tensor_shape.dim.slice(1).map((d) => d.size);
      if (dims.join("x") !== "8x8") {
        unsupported = `This page draws 8x8 digits, but the service's default model, ${model} ` +
          `version ${version}, takes '${name}' of shape [${dims.join(", ")}]. Send it ` +
          "requests through the API instead (see OpenAPI below), or list a digits model " +
          "first in MODEL_URI.";
        showError(unsupported);
      }
    }
  }).catch((err) => showError(`The service is not ready (${err.message}). Reload the page in a moment.`));
  clearPad();
})();
