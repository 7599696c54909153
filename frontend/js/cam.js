// The CAM page: explain the classifier's prediction for a world scene or an upload, several methods side by side.
import { getJSON, token } from "./api.js";

const $ = (id) => document.getElementById(id);
const METHODS = ["cam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "scorecam", "ablationcam",
  "eigencam", "saliency", "guidedbackprop", "deconvnet"];
const CLASSES = ["church", "village", "park", "lakeside"];
let upload = null;
let last = null;

function banner(kind, text) {
  $("banner").className = text ? `banner show ${kind}` : "banner";
  $("banner").textContent = text || "";
}

for (const name of METHODS) {
  const label = document.createElement("label");
  const box = document.createElement("input");
  box.type = "checkbox";
  box.value = name;
  box.checked = ["cam", "gradcam", "scorecam", "saliency"].includes(name);
  box.setAttribute("aria-label", `method ${name}`);
  label.append(box, document.createTextNode(" " + name));
  $("methods").append(label);
}
CLASSES.forEach((name, i) => $("target").append(new Option(name, String(i))));

function drawPanel(title, imageUrl, overlayUrl, alpha, boxes) {
  const figure = document.createElement("figure");
  figure.style.margin = "0";
  const canvas = document.createElement("canvas");
  canvas.width = 256;
  canvas.height = 256;
  canvas.style.width = "256px";
  canvas.setAttribute("aria-label", title);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  const base = new Image();
  const heat = new Image();
  let loaded = 0;
  const draw = () => {
    if (++loaded < (overlayUrl ? 2 : 1)) return;
    ctx.globalAlpha = 1;
    ctx.drawImage(base, 0, 0, 256, 256);
    if (overlayUrl) {
      ctx.globalAlpha = alpha;
      ctx.drawImage(heat, 0, 0, 256, 256);
    }
    ctx.globalAlpha = 1;
    ctx.strokeStyle = "#00ff66";
    ctx.lineWidth = 2;
    for (const [x0, y0, x1, y1] of boxes || []) ctx.strokeRect(x0 * 4, y0 * 4, (x1 - x0) * 4, (y1 - y0) * 4);
  };
  base.onload = draw;
  heat.onload = draw;
  base.src = imageUrl;
  if (overlayUrl) heat.src = overlayUrl;
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  figure.append(canvas, caption);
  return figure;
}

function render() {
  if (!last) return;
  const alpha = Number($("alpha").value) / 100;
  const results = $("results");
  results.replaceChildren(drawPanel(`input${last.truth ? " (" + last.truth + ")" : ""}`, last.image, null, 0, last.boxes));
  for (const r of last.results) results.append(drawPanel(`${r.method} · ${r.ms.toFixed(0)} ms`, last.image, r.heatmap, alpha, []));
  $("predictions").textContent = "predictions: " + last.predictions.map((p) => `${p.name} ${(p.probability * 100).toFixed(1)}%`).join(", ") +
    ` — explaining "${last.target.name}"` + (last.boxes.length ? " (green: ground-truth boxes)" : "");
}

async function explain() {
  const form = new FormData();
  const methods = [...$("methods").querySelectorAll("input:checked")].map((b) => b.value);
  if (!methods.length || methods.length > 6) return banner("warn", "choose 1 to 6 methods");
  form.set("methods", methods.join(","));
  if ($("target").value) form.set("target", $("target").value);
  if (upload) form.set("image", upload);
  else form.set("sample", $("sample").value || "0");
  banner("info", "computing…");
  const headers = token() ? { Authorization: `Bearer ${token()}` } : {};
  let response;
  try {
    response = await fetch("/api/cam", { method: "POST", body: form, headers });
  } catch (error) {
    return banner("error", `the server could not be reached (${error.message})`);
  }
  let body;
  try {
    body = await response.json();
  } catch (_) {  // every API error is JSON; a proxy in between may answer otherwise
    body = { error: { code: `http_${response.status}`, message: response.statusText || "an answer that is not JSON" } };
  }
  if (!response.ok) return banner("error", `${body.error.code}: ${body.error.message}`);
  banner("", "");
  last = body;
  render();
  document.body.dataset.ready = "true";
}

// say which classifier is explained: the one trained on the served model's world
getJSON("/api/classifier").then((info) => {
  $("classifier-info").textContent = `Explaining ${info.id}: classes ${info.classes.join(", ")}; CAM layer ${info.cam_layer}.`;
}).catch(() => {});

$("explain").addEventListener("click", explain);
$("alpha").addEventListener("input", render);
$("random-scene").addEventListener("click", () => {
  upload = null;
  $("sample").value = String(Math.floor(Math.random() * 10000));
  explain();
});
$("sample").addEventListener("change", () => {
  upload = null;
  explain();
});
$("upload").addEventListener("change", () => {
  upload = $("upload").files[0] || null;
  if (upload) explain();
});
for (const type of ["dragover", "drop"]) {
  $("drop").addEventListener(type, (event) => {
    event.preventDefault();
    if (type === "drop" && event.dataTransfer.files[0]) {
      upload = event.dataTransfer.files[0];
      explain();
    }
  });
}
explain().catch((error) => banner("error", error.message));
