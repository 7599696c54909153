// A classifier unit in the manner of OpenAI Microscope: feature visualisation, dataset examples,
// dissection label and IoU, and the classes it drives; each piece computed by a (cached) job.
import { cancelJob, getJSON, postJSON } from "./api.js";

const $ = (id) => document.getElementById(id);
let info = null;
let shown = 0; // generation of the unit on screen: answers for a unit the user has left are dropped
let running = []; // {id, layer, perUnit} of jobs started for the unit on screen and not finished

function banner(kind, text) {
  $("banner").className = text ? `banner show ${kind}` : "banner";
  $("banner").textContent = text || "";
}

function follow(job, onProgress) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/jobs/${job.id}`);
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "error") return reject(new Error(message.message));
      onProgress(message);
      if (message.status === "done") resolve(message);
      else if (message.status === "failed" || message.status === "cancelled") reject(new Error(message.error || message.status));
    };
    ws.onerror = () => reject(new Error("job updates failed"));
  });
}

class Stale extends Error {}

async function runJob(path, body, statusId, generation, perUnit) {
  const job = await (await postJSON(path, body)).json();
  const entry = { id: job.id, layer: body.layer, perUnit };
  running.push(entry);
  try {
    const done = await follow(job, (m) => {
      if (generation === shown) $(statusId).textContent = `${m.status} ${(m.progress * 100).toFixed(0)}% ${m.message || ""}`;
    });
    if (generation !== shown) throw new Stale();
    $(statusId).textContent = "";
    return done;
  } finally {
    running = running.filter((r) => r !== entry);
  }
}

// Leaving a unit: its per-unit jobs (feature visualisation, top images) are cancelled; a layer-wide
// one (the dissection) is kept while the layer stays, as the next unit needs it too.
function leave(nextLayer) {
  for (const job of running) if (job.perUnit || job.layer !== nextLayer) cancelJob(job.id);
  for (const id of ["featviz", "topk"]) $(id).removeAttribute("src");
  for (const id of ["dissection", "drives", "featviz-status", "topk-status"]) $(id).textContent = "";
}

async function show() {
  const layer = $("layer").value;
  const unit = Number($("unit").value);
  const units = info.layers.find((l) => l.name === layer)?.units || 1;
  if (!Number.isInteger(unit) || unit < 0 || unit >= units) return banner("warn", `units of ${layer} run from 0 to ${units - 1}`);
  banner("", "");
  leave(layer);
  const generation = ++shown;
  $("title").textContent = `${info.id} · ${layer} · unit ${unit}`;
  history.replaceState(null, "", `/unit?layer=${layer}&unit=${unit}`);
  const jobs = [
    runJob("/api/featviz", { layer, units: [unit], param: $("param").value, steps: 256 }, "featviz-status", generation, true)
      .then((job) => ($("featviz").src = `/api/jobs/${job.id}/files/${job.result.image}`)),
    runJob("/api/topk", { layer, units: [unit], count: 2000, k: 8 }, "topk-status", generation, true)
      .then((job) => ($("topk").src = `/api/jobs/${job.id}/files/${job.result.units[0].image}`)),
    runJob("/api/netdissect", { layer, samples: 1000 }, "dissection", generation, false).then(async (job) => {
      const table = await getJSON(`/api/jobs/${job.id}/files/netdissect.json`);
      if (generation !== shown) return;
      const u = table.units[unit];
      $("dissection").textContent = `${u.label} (${u.category}), IoU ${u.iou.toFixed(3)}` +
        (u.interpretable ? "" : " — below the 0.04 detector threshold");
      $("drives").textContent = u.drives.map((d) => `${d.class} (${d.weight.toFixed(3)})`).join(", ") || "—";
    }),
  ];
  const results = await Promise.allSettled(jobs);
  if (generation !== shown) return; // the user moved on; the new unit reports for itself
  const failed = results.filter((r) => r.status === "rejected" && !(r.reason instanceof Stale));
  if (failed.length) banner("error", failed.map((r) => r.reason.message).join("; "));
  document.body.dataset.ready = "true";
}

(async () => {
  info = await getJSON("/api/classifier");
  for (const layer of info.layers) $("layer").append(new Option(`${layer.name} (${layer.units} units)`, layer.name));
  const params = new URLSearchParams(location.search);
  $("layer").value = params.get("layer") || info.cam_layer || info.layers[info.layers.length - 1].name;
  $("unit").value = params.get("unit") || "0";
  for (const id of ["layer", "unit", "param"]) $(id).addEventListener("change", show);
  $("prev").addEventListener("click", () => { $("unit").value = String(Math.max(0, Number($("unit").value) - 1)); show(); });
  $("next").addEventListener("click", () => { $("unit").value = String(Number($("unit").value) + 1); show(); });
  await show();
})().catch((error) => banner("error", error.message));
