// The painter page: brushes, strokes on a canvas, live rendering over the websocket, history, sharing.
import * as api from "./api.js";
import { createMaskCanvas, decodeMask, encodeMask, paintSegment, tintMask } from "./mask.js";
import { PaintSocket } from "./socket.js";
import { History, buildRecipe, customBrushes, decodeFragment, encodeFragment } from "./state.js";

const ACTION_COLORS = { add: "#0bc6d4", remove: "#e1484a", erase: "#8a8f98" };
const PREVIEW_INTERVAL_MS = 90;
const $ = (id) => document.getElementById(id);

const ui = {
  image: $("image"), overlay: $("overlay"), brushes: $("brushes"), history: $("history"), samples: $("samples"),
  strength: $("strength"), strengthValue: $("strength-value"), size: $("brush-size"), sizeValue: $("brush-size-value"),
  gridHint: $("grid-hint"), brushCount: $("brush-count"),
  model: $("model-select"), layer: $("layer-select"), banner: $("banner"), status: $("status"), seqInfo: $("seq-info"),
  gotoInput: $("goto-id"), importFile: $("import-file"),
  uploadFile: $("upload-file"), uploadStatus: $("upload-status"), beforeAfter: $("before-after"),
  reconstructions: $("reconstructions"), stage: document.querySelector(".stage"),
};

const state = {
  view: { model: null, layer: null, sample: 0, upload: null },
  info: null, brushList: [], brush: null, action: "add", history: new History(),
  current: null, // stroke being drawn: {mask canvas, last point, ...}
  lastPreviewAt: 0, lastPng: null, shownIsPreview: true, pendingFinal: false,
  highlight: null, cursor: null, building: false,
};
window.ganpaint = state; // for debugging and tests

// ---------------------------------------------------------------------------------------------
// banners and status
function banner(kind, text) {
  ui.banner.className = text ? `banner show ${kind}` : "banner";
  ui.banner.textContent = text || "";
  ui.banner.setAttribute("data-kind", text ? kind : "");
}

const socket = new PaintSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/paint`);
window.ganpaintSocket = socket;
socket.addEventListener("status", (event) => {
  const { state: s, retryIn, reason } = event.detail;
  if (s === "connecting") banner("info", "connecting…");
  else if (s === "refused") {
    banner("error", `The server refused the painting connection: ${reason}. The operator sets ` +
      `GANPAINT_ALLOWED_ORIGINS to the address in this browser's bar (${location.origin}), then restarts it.`);
  }
  // a replica going away (a cluster) or a restart: the strokes are all here and are sent again
  else if (s === "closed") banner("warn", `reconnecting in ${(retryIn / 1000).toFixed(1)} s — your strokes are kept`);
  else if (s === "open") {
    banner(state.building ? "info" : "", state.building ? "computing brushes…" : "");
    if (state.view.model) requestRender(false);
  }
});
socket.addEventListener("error", (event) => {
  const { code, message } = event.detail;
  if (code === "busy" || code === "deadline") {
    banner("warn", "server busy — retrying");
    setTimeout(() => requestRender(false), 400);
  } else if (code === "tables_building") {
    banner("info", "computing brushes…");
    setTimeout(() => requestRender(false), 1500);
  } else {
    banner("error", `${code}: ${message}`);
  }
});
// Images decode asynchronously, so a drag preview arriving just before the final PNG could finish
// decoding after it and be drawn over it: only the newest arrival may draw.
let newestImageSeq = -1;
socket.addEventListener("image", async (event) => {
  const { header, blob } = event.detail;
  if (header.seq < newestImageSeq) return;
  newestImageSeq = header.seq;
  const bitmap = await createImageBitmap(blob);
  if (header.seq !== newestImageSeq) {
    bitmap.close();
    return;
  }
  state.shownBitmap = bitmap;
  if (!state.showOriginal) drawBitmap(bitmap);
  state.shownIsPreview = header.format !== "png";
  if (!state.shownIsPreview) state.lastPng = blob;
  ui.image.dataset.seq = String(header.seq);
  ui.image.dataset.format = header.format;
  ui.seqInfo.textContent = `#${header.seq} · ${header.timings.compute_ms.toFixed(1)} ms`;
  if (ui.banner.getAttribute("data-kind") === "warn") banner("", "");
  if (!state.current) drawOverlay();
});

function drawBitmap(bitmap) {
  const ctx = ui.image.getContext("2d");
  ui.image.width = bitmap.width;
  ui.image.height = bitmap.height;
  ctx.drawImage(bitmap, 0, 0);
}

// ---------------------------------------------------------------------------------------------
// your own picture: upload, the encoder's instant reconstruction, the inversion job, before/after
function describeUpload(info) {
  const psnr = info.psnr_db || {};
  const parts = [];
  if (psnr.encoded !== undefined) parts.push(`encoder ${psnr.encoded.toFixed(1)} dB`);
  if (psnr.refined !== undefined) parts.push(`refined ${psnr.refined.toFixed(1)} dB`);
  if (psnr.adapted !== undefined) parts.push(`adapted ${psnr.adapted.toFixed(1)} dB`);
  return parts.length ? `reconstruction PSNR: ${parts.join(" → ")}` : "";
}

function showReconstructions(info) {
  ui.reconstructions.replaceChildren();
  const labels = { "picture.png": "your picture", "encoded.png": "encoder", "refined.png": "refined", "adapted.png": "adapted" };
  for (const [name, url] of Object.entries(info.files || {})) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = url;
    img.alt = labels[name] || name;
    const caption = document.createElement("figcaption");
    caption.textContent = labels[name] || name;
    figure.append(img, caption);
    ui.reconstructions.append(figure);
  }
}

async function startUpload(file) {
  if (!file) return;
  ui.uploadStatus.textContent = `uploading ${file.name}…`;
  let info;
  try {
    info = await api.uploadPicture(file, state.view.model);
  } catch (error) {
    ui.uploadStatus.textContent = "";
    banner("error", `upload refused: ${error.message}`);
    return;
  }
  await openUpload(info);
}

async function openUpload(info) {
  state.view.upload = info.id;
  state.history = new History();
  state.lastPng = null;
  state.original = null;
  state.showOriginal = false;
  ui.beforeAfter.disabled = false;
  ui.beforeAfter.setAttribute("aria-pressed", "false");
  for (const b of ui.samples.querySelectorAll("button")) b.setAttribute("aria-current", "false");
  showReconstructions(info);
  ui.uploadStatus.textContent = describeUpload(info);
  changed();
  await followInversion(info);
}

// While the upload's inversion job runs, show its progress; when it ends, paint the refined version.
async function followInversion(info) {
  if (info.job && !["done", "failed", "cancelled"].includes(info.job.status)) {
    const id = info.id;
    try {
      await api.followJob(info.job.id, (job) => {
        if (state.view.upload === id && job.status === "running") {
          ui.uploadStatus.textContent = `${describeUpload(info)} · inverting: ${job.message || ""} ` +
            `${Math.round(job.progress * 100)}%`;
        }
      });
    } catch (error) {
      if (state.view.upload === id) banner("warn", `inversion stopped: ${error.message}; painting the encoder's version`);
    }
    if (state.view.upload !== id) return;
    const done = await api.uploadInfo(id);
    showReconstructions(done);
    ui.uploadStatus.textContent = describeUpload(done);
    requestRender(false); // the refined, adapted version replaces the preview
  }
}

// Show the uploaded picture itself, or the painted one; the button's state changes once it is drawn.
async function toggleOriginal() {
  if (!state.view.upload) return;
  const show = !state.showOriginal;
  if (show && !state.original) {
    const blob = await (await fetch(api.uploadFileUrl(state.view.upload, "picture.png"))).blob();
    state.original = await createImageBitmap(blob);
  }
  state.showOriginal = show;
  const bitmap = show ? state.original : state.shownBitmap;
  if (bitmap) drawBitmap(bitmap);
  ui.beforeAfter.setAttribute("aria-pressed", String(show));
  ui.beforeAfter.textContent = show ? "painted" : "original";
}

$("upload").addEventListener("click", () => ui.uploadFile.click());
ui.uploadFile.addEventListener("change", () => {
  startUpload(ui.uploadFile.files[0]);
  ui.uploadFile.value = "";
});
ui.beforeAfter.addEventListener("click", toggleOriginal);
ui.stage.addEventListener("dragover", (event) => {
  event.preventDefault();
  ui.stage.classList.add("dropping");
});
ui.stage.addEventListener("dragleave", () => ui.stage.classList.remove("dropping"));
ui.stage.addEventListener("drop", (event) => {
  event.preventDefault();
  ui.stage.classList.remove("dropping");
  const file = [...(event.dataTransfer?.files || [])].find((f) => /^image\/(png|jpeg)$/.test(f.type));
  if (file) startUpload(file);
  else banner("warn", "drop a PNG or JPEG picture");
});

// ---------------------------------------------------------------------------------------------
// rendering requests
function activeStrokes() {
  const strokes = state.history.strokes;
  return state.current ? [...strokes, currentStrokeRecord()] : strokes;
}

function requestRender(preview) {
  if (!state.view.model) return;
  const seq = socket.send(buildRecipe(state.view, activeStrokes()), preview);
  if (seq >= 0) ui.image.dataset.requested = String(seq);
}

function updateUrl() {
  const hash = encodeFragment(state.view, state.history.strokes);
  history.replaceState(null, "", location.pathname + location.search.replace(/[?&](units|name)=[^&]*/g, "") + hash);
}

function changed() {
  updateUrl();
  renderHistory();
  requestRender(false);
  drawOverlay();
}

// ---------------------------------------------------------------------------------------------
// brushes
function strokeTemplate() {
  const brush = state.brush;
  const base = { action: state.action, strength: Number(ui.strength.value) / 100, enabled: true };
  if (state.action === "erase") return { ...base, name: "erase" };
  if (!brush) return null;
  return brush.units && brush.custom
    ? { ...base, units: brush.units, name: brush.name }
    : { ...base, brush: brush.name, name: brush.name };
}

function renderBrushes() {
  ui.brushes.replaceChildren();
  if (!state.brushList.length && !state.building) {
    const note = document.createElement("p");
    note.className = "muted";
    note.textContent = "No unit of this layer detects a concept; paint with units from the unit browser.";
    ui.brushes.append(note);
  }
  const custom = customBrushes().filter((b) => b.model === state.view.model && b.layer === state.view.layer)
    .map((b) => ({ ...b, custom: true, color: "#7a4fd1" }));
  const extra = state.urlBrush ? [state.urlBrush] : [];
  for (const brush of [...state.brushList, ...extra, ...custom]) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.brush = brush.name;
    button.setAttribute("aria-pressed", String(state.brush && state.brush.name === brush.name));
    button.setAttribute("aria-label", `brush ${brush.name}`);
    button.title = brush.custom ? `custom brush: units ${brush.units.join(", ")}` : `${brush.name} (${brush.ranking} ranking)`;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = brush.color;
    button.append(swatch, document.createTextNode(brush.name));
    button.addEventListener("click", () => selectBrush(brush));
    ui.brushes.append(button);
  }
  const count = state.brushList.length + extra.length + custom.length;
  ui.brushCount.textContent = count ? `(${count})` : "";
  updateScrollCue();
}

// a visible cue when the brush list continues below its visible part
function updateScrollCue() {
  const list = ui.brushes;
  const more = list.scrollHeight - list.scrollTop - list.clientHeight > 4;
  list.parentElement.classList.toggle("more", more);
}

function selectBrush(brush) {
  state.brush = brush;
  if (state.action === "erase") setAction("add");
  for (const b of ui.brushes.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.brush === brush.name));
}

function setAction(action) {
  state.action = action;
  for (const b of document.querySelectorAll(".actions button")) b.setAttribute("aria-pressed", String(b.dataset.action === action));
}

async function loadBrushes() {
  try {
    const data = await api.brushes(state.view.model, state.view.layer);
    state.brushList = data.brushes;
    state.building = false;
    if (ui.banner.textContent.startsWith("computing")) banner("", "");
  } catch (error) {
    state.brushList = [];
    if (error.code === "tables_building") {
      state.building = true;
      banner("info", `computing brushes… (${error.message})`);
      setTimeout(loadBrushes, 2000);
    } else if (error.code !== "no_table") {
      banner("error", `brushes: ${error.message}`);
    }
  }
  if (!state.brush || !state.brushList.some((b) => b.name === state.brush.name)) {
    state.brush = state.urlBrush || state.brushList.find((b) => b.name === "tree") || state.brushList[0] || null;
  }
  renderBrushes();
}

// ---------------------------------------------------------------------------------------------
// painting
function maskSide() {
  return Math.min(256, Math.max(64, (state.info?.resolution || 64) * 2));
}

function toMask(event) {
  const rect = ui.overlay.getBoundingClientRect();
  const side = maskSide();
  return { x: ((event.clientX - rect.left) / rect.width) * side, y: ((event.clientY - rect.top) / rect.height) * side };
}

function radiusInMask() {
  // brush size is in image pixels (diameter); the mask is maskSide() wide
  return (Number(ui.size.value) / 2) * (maskSide() / (state.info?.resolution || 64));
}

function currentStrokeRecord() {
  const template = state.current.template;
  return { ...template, mask: encodeMask(state.current.canvas) };
}

ui.overlay.addEventListener("pointerdown", (event) => {
  if (event.button !== 0 && event.pointerType === "mouse") return;
  const template = strokeTemplate();
  if (!template) {
    banner("warn", "choose a brush first");
    return;
  }
  ui.overlay.setPointerCapture(event.pointerId);
  const canvas = createMaskCanvas(maskSide());
  const point = toMask(event);
  paintSegment(canvas, point, point, radiusInMask());
  state.current = { canvas, last: point, template, pointerId: event.pointerId };
  drawOverlay();
  maybePreview();
  event.preventDefault();
});

ui.overlay.addEventListener("pointermove", (event) => {
  state.cursor = toMask(event);
  if (!state.current || event.pointerId !== state.current.pointerId) {
    drawOverlay();
    return;
  }
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) {
    const point = toMask(e);
    paintSegment(state.current.canvas, state.current.last, point, radiusInMask());
    state.current.last = point;
  }
  drawOverlay();
  maybePreview();
});

function endStroke(event) {
  if (!state.current || event.pointerId !== state.current.pointerId) return;
  const record = currentStrokeRecord();
  state.current = null;
  state.history.push(record);
  changed();
}
ui.overlay.addEventListener("pointerup", endStroke);
ui.overlay.addEventListener("pointercancel", endStroke);
ui.overlay.addEventListener("pointerleave", () => {
  state.cursor = null;
  if (!state.current) drawOverlay();
});

function maybePreview() {
  const now = performance.now();
  if (now - state.lastPreviewAt < PREVIEW_INTERVAL_MS) return;
  state.lastPreviewAt = now;
  requestRender(true);
}

function drawOverlay() {
  const canvas = ui.overlay;
  const rect = canvas.getBoundingClientRect();
  const side = Math.round(rect.width * (window.devicePixelRatio || 1)) || 512;
  if (canvas.width !== side) {
    canvas.width = side;
    canvas.height = side;
  }
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, side, side);
  if (state.current) tintMask(canvas, state.current.canvas, ACTION_COLORS[state.current.template.action], 0.55);
  if (state.highlight !== null && state.history.strokes[state.highlight]) {
    const stroke = state.history.strokes[state.highlight];
    tintMask(canvas, decodeMask(stroke.mask), ACTION_COLORS[stroke.action], 0.6);
  }
  if (state.cursor) {
    const scale = side / maskSide();
    ctx.beginPath();
    ctx.arc(state.cursor.x * scale, state.cursor.y * scale, Math.max(radiusInMask() * scale, 2), 0, Math.PI * 2);
    ctx.strokeStyle = "rgba(255,255,255,.9)";
    ctx.lineWidth = 2;
    ctx.stroke();
    ctx.strokeStyle = "rgba(0,0,0,.7)";
    ctx.lineWidth = 1;
    ctx.stroke();
  }
}

// ---------------------------------------------------------------------------------------------
// history list
function renderHistory() {
  ui.history.replaceChildren();
  state.history.strokes.forEach((stroke, index) => {
    const item = document.createElement("li");
    item.className = stroke.enabled === false ? "off" : "";
    item.dataset.index = String(index);
    const thumb = document.createElement("canvas");
    thumb.width = 32;
    thumb.height = 32;
    tintMask(thumb, decodeMask(stroke.mask), ACTION_COLORS[stroke.action], 1);
    const name = document.createElement("span");
    name.className = "name";
    name.tabIndex = 0;
    name.setAttribute("role", "switch");
    name.setAttribute("aria-checked", String(stroke.enabled !== false));
    name.setAttribute("aria-label", `stroke ${index + 1}: ${stroke.name} ${stroke.action}; toggle`);
    name.textContent = `${stroke.name} ${stroke.action === "add" ? "draw" : stroke.action} (${Math.round(stroke.strength * 100)}%)`;
    const toggle = () => {
      state.history.toggle(index);
      changed();
    };
    name.addEventListener("click", toggle);
    name.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        toggle();
      }
    });
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `delete stroke ${index + 1}`);
    remove.addEventListener("click", () => {
      state.history.remove(index);
      state.highlight = null;
      changed();
    });
    item.addEventListener("mouseenter", () => {
      state.highlight = index;
      drawOverlay();
    });
    item.addEventListener("mouseleave", () => {
      state.highlight = null;
      drawOverlay();
    });
    item.append(thumb, name, remove);
    ui.history.append(item);
  });
  $("history-count").textContent = String(state.history.strokes.length);
}

// ---------------------------------------------------------------------------------------------
// samples, models, layers
async function renderSampleStrip(ids) {
  ui.samples.replaceChildren();
  for (const id of ids) {
    const button = document.createElement("button");
    button.type = "button";
    button.setAttribute("aria-label", `sample ${id}`);
    button.setAttribute("aria-current", String(id === state.view.sample));
    const img = document.createElement("img");
    img.alt = `sample ${id}`;
    img.loading = "lazy";
    img.src = api.sampleUrl(state.view.model, id);
    button.append(img);
    button.addEventListener("click", () => goToSample(id));
    ui.samples.append(button);
  }
}

function goToSample(id) {
  state.view.sample = id;
  state.view.upload = null;
  state.showOriginal = false;
  ui.beforeAfter.disabled = true;
  ui.beforeAfter.textContent = "original";
  ui.reconstructions.replaceChildren();
  state.history = new History();
  state.lastPng = null;
  for (const b of ui.samples.querySelectorAll("button")) b.setAttribute("aria-current", String(b.getAttribute("aria-label") === `sample ${id}`));
  ui.gotoInput.value = String(id);
  changed();
}

async function loadModel(modelId, layer) {
  state.info = await api.model(modelId);
  state.view.model = modelId;
  state.view.layer = layer && state.info.layers.some((l) => l.name === layer) ? layer : state.info.edit_layer;
  ui.layer.replaceChildren();
  for (const l of state.info.layers.filter((l) => l.name.startsWith("layer"))) {
    const option = new Option(`${l.name} (${l.shape[0]}×${l.shape[1]}×${l.shape[2]})`, l.name);
    option.selected = l.name === state.view.layer;
    ui.layer.append(option);
  }
  ui.image.width = state.info.resolution;
  ui.image.height = state.info.resolution;
  ui.image.classList.toggle("tiny", state.info.resolution < 64);
  // sizes in image pixels: at most half the image; the default brush covers about 2x2 edit cells
  ui.size.max = String(Math.max(8, Math.round(state.info.resolution / 2)));
  if (!sizeChosen) ui.size.value = String(Math.round(2 * cellPixels()));
  describeGrid();
  setSize(Number(ui.size.value));
  await loadBrushes();
}

let sizeChosen = false;

function layerGrid() {
  const layer = state.info?.layers.find((l) => l.name === state.view.layer);
  return layer ? layer.shape[1] : 8;
}

function cellPixels() {
  return (state.info?.resolution || 64) / layerGrid();
}

function describeGrid() {
  const grid = layerGrid();
  ui.gridHint.textContent = `The painted region is pooled to the edit layer's ${grid}×${grid} grid: one cell is ` +
    `${cellPixels()} px, 1/${grid} of the image's width and height (1/${grid * grid} of its area).`;
}

// ---------------------------------------------------------------------------------------------
// controls
function setSize(value) {
  const clamped = Math.max(Number(ui.size.min), Math.min(Number(ui.size.max), value));
  ui.size.value = String(clamped);
  const resolution = state.info?.resolution || 64;
  const cells = clamped / cellPixels();
  // a diameter in generated-image pixels, also as a share of the width and in edit cells
  ui.sizeValue.textContent = `${clamped} px · ${Math.round((100 * clamped) / resolution)}% of width · ` +
    `${cells < 10 ? cells.toFixed(1) : Math.round(cells)} cell${cells === 1 ? "" : "s"}`;
  drawOverlay();
}

ui.size.addEventListener("input", () => { sizeChosen = true; setSize(Number(ui.size.value)); });
ui.brushes.addEventListener("scroll", updateScrollCue);
window.addEventListener("resize", updateScrollCue);
ui.strength.addEventListener("input", () => (ui.strengthValue.textContent = `${ui.strength.value}%`));
for (const b of document.querySelectorAll(".actions button")) b.addEventListener("click", () => setAction(b.dataset.action));

function undo() {
  if (state.history.undo()) changed();
}
function redo() {
  if (state.history.redo()) changed();
}
$("undo").addEventListener("click", undo);
$("redo").addEventListener("click", redo);
$("reset").addEventListener("click", () => {
  if (state.history.reset()) changed();
});

document.addEventListener("keydown", (event) => {
  const target = event.target;
  if (target instanceof HTMLInputElement && target.type !== "range") return;
  const ctrl = event.ctrlKey || event.metaKey;
  if (ctrl && event.key.toLowerCase() === "z") {
    event.preventDefault();
    event.shiftKey ? redo() : undo();
  } else if (ctrl && event.key.toLowerCase() === "y") {
    event.preventDefault();
    redo();
  } else if (!ctrl && event.key === "[") {
    sizeChosen = true;
    setSize(Number(ui.size.value) - 1);
  } else if (!ctrl && event.key === "]") {
    sizeChosen = true;
    setSize(Number(ui.size.value) + 1);
  } else if (!ctrl && event.key.toLowerCase() === "b") {
    setAction("add");
  } else if (!ctrl && event.key.toLowerCase() === "r") {
    setAction("remove");
  } else if (!ctrl && event.key.toLowerCase() === "e") {
    setAction("erase");
  }
});

ui.model.addEventListener("change", async () => {
  await loadModel(ui.model.value, null);
  goToSample(state.view.sample);
  const page = await api.samplePage(state.view.model, { offset: 0, limit: 12 });
  renderSampleStrip(page.ids);
});
ui.layer.addEventListener("change", async () => {
  state.view.layer = ui.layer.value;
  state.history = new History();
  await loadBrushes();
  changed();
});

$("random").addEventListener("click", async () => {
  const page = await api.samplePage(state.view.model, { random: true, seed: Math.floor(Math.random() * 2 ** 31), limit: 12 });
  renderSampleStrip(page.ids);
  goToSample(page.ids[0]);
});
$("goto").addEventListener("click", () => {
  const id = Number(ui.gotoInput.value);
  if (Number.isInteger(id) && id >= 0 && id <= 999999) goToSample(id);
  else banner("warn", "sample ids run from 0 to 999999");
});

function downloadBlob(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

$("download").addEventListener("click", async () => {
  const blob = await api.renderPng(buildRecipe(state.view, state.history.strokes));
  downloadBlob(blob, `ganpaint-${state.view.model}-${state.view.upload ? state.view.upload.slice(0, 8) : state.view.sample}.png`);
});
$("export").addEventListener("click", () => {
  const recipe = buildRecipe(state.view, state.history.strokes);
  const document_ = { ...recipe, ui: { strokes: state.history.strokes.map((s) => ({ name: s.name, enabled: s.enabled })) } };
  downloadBlob(new Blob([JSON.stringify(document_, null, 2)], { type: "application/json" }),
    `ganpaint-${state.view.model}-${state.view.upload ? state.view.upload.slice(0, 8) : state.view.sample}.json`);
});
$("import").addEventListener("click", () => ui.importFile.click());
ui.importFile.addEventListener("change", async () => {
  const file = ui.importFile.files[0];
  if (!file) return;
  try {
    const recipe = JSON.parse(await file.text());
    const upload = typeof recipe.upload === "string" ? recipe.upload : null;
    if (recipe.v !== 1 || !Array.isArray(recipe.strokes) || !(Number.isInteger(recipe.sample) || upload)) {
      throw new Error("not a v1 recipe");
    }
    if (recipe.model !== state.view.model) await loadModel(recipe.model, recipe.layer);
    state.view = { model: recipe.model, layer: recipe.layer || state.view.layer, sample: recipe.sample ?? 0, upload };
    state.history = new History();
    recipe.strokes.forEach((s, i) => state.history.push({ ...s, name: recipe.ui?.strokes?.[i]?.name || s.brush || "units",
      enabled: recipe.ui?.strokes?.[i]?.enabled !== false, strength: s.strength ?? 0.5 }));
    changed();
  } catch (error) {
    banner("error", `import failed: ${error.message}`);
  }
  ui.importFile.value = "";
});

new ResizeObserver(() => drawOverlay()).observe(ui.overlay);

// ---------------------------------------------------------------------------------------------
// start
async function start() {
  const params = new URLSearchParams(location.search);
  const shared = decodeFragment(location.hash);
  const list = await api.models();
  for (const m of list) ui.model.append(new Option(m.id, m.id));
  const modelId = shared?.model || params.get("model") || (list.find((m) => m.default) || list[0]).id;
  ui.model.value = modelId;
  if (params.get("units")) {
    const units = params.get("units").split(",").map(Number).filter((u) => Number.isInteger(u) && u >= 0);
    state.urlBrush = { name: params.get("name") || `units ${units.join(",")}`, units, custom: true, color: "#7a4fd1" };
  }
  await loadModel(modelId, shared?.layer || params.get("layer"));
  if (state.urlBrush) selectBrush(state.urlBrush);
  state.view.sample = shared?.sample ?? Number(params.get("sample") || 0);
  if (shared?.upload) {
    state.view.upload = shared.upload;
    ui.beforeAfter.disabled = false;
    api.uploadInfo(shared.upload).then(async (info) => {
      showReconstructions(info);
      ui.uploadStatus.textContent = describeUpload(info);
      if (info.stage === "encoded") await followInversion(await api.invertUpload(info.id)); // interrupted before
    }).catch((error) => banner("error", `the shared picture is gone: ${error.message}`));
  }
  if (shared) for (const stroke of shared.strokes || []) state.history.push(stroke);
  ui.gotoInput.value = String(state.view.sample);
  setSize(Number(ui.size.value));
  const page = await api.samplePage(state.view.model, { offset: 0, limit: 12 });
  renderSampleStrip(page.ids.includes(state.view.sample) ? page.ids : [state.view.sample, ...page.ids.slice(0, 11)]);
  changed();
  document.body.dataset.ready = "true";
}

start().catch((error) => banner("error", `could not start: ${error.message}`));
