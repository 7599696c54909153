// The unit browser: a layer's dissection table, sortable and filterable, with top images per unit.
import * as api from "./api.js";
import { createMaskCanvas, encodeMask } from "./mask.js";
import { saveCustomBrush } from "./state.js";

const $ = (id) => document.getElementById(id);
const CATEGORY_COLORS = { object: "#4b8bbe", material: "#c97b4a", color: "#8a6bbf", part: "#5aa469", scene: "#d4a017" };
const view = { model: null, layer: null, table: null, sort: "iou", descending: true, selected: new Set() };

function banner(kind, text) {
  $("banner").className = text ? `banner show ${kind}` : "banner";
  $("banner").textContent = text || "";
}

function drawBars(table) {
  const counts = {};
  for (const unit of table.units) {
    if (!unit.interpretable) continue;
    const key = `${unit.category}|${unit.label}`;
    counts[key] = (counts[key] || 0) + 1;
  }
  const bars = Object.entries(counts).sort((a, b) => {
    const [ca] = a[0].split("|");
    const [cb] = b[0].split("|");
    return ca === cb ? b[1] - a[1] : table.categories.indexOf(ca) - table.categories.indexOf(cb);
  });
  const top = Math.max(1, ...bars.map((b) => b[1]));
  const width = Math.max(240, bars.length * 26 + 20);
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="190" role="img" aria-label="interpretable units per concept">`];
  bars.forEach(([key, n], i) => {
    const [category, label] = key.split("|");
    const h = (120 * n) / top;
    const x = 10 + i * 26;
    parts.push(`<rect x="${x}" y="${135 - h}" width="20" height="${h}" fill="${CATEGORY_COLORS[category] || "#888"}"><title>${label} (${category}): ${n}</title></rect>`);
    parts.push(`<text x="${x + 10}" y="${131 - h}" font-size="10" text-anchor="middle">${n}</text>`);
    parts.push(`<text transform="translate(${x + 10},145) rotate(55)" font-size="10">${label}</text>`);
  });
  parts.push("</svg>");
  const legend = Object.entries(table.detectors_per_category).map(([c, n]) =>
    `<span style="color:${CATEGORY_COLORS[c] || "#444"}">■</span> ${c}: ${n}`).join(" &nbsp; ");
  $("bars").innerHTML = parts.join("") + `<div class="muted">detectors per category (one label per unit): ${legend}</div>`;
}

function renderRows() {
  const table = view.table;
  const text = $("filter-label").value.trim().toLowerCase();
  const category = $("filter-category").value;
  const minIou = Number($("filter-iou").value) || 0;
  const key = view.sort;
  const rows = table.units
    .filter((u) => (!text || u.label.toLowerCase().includes(text)) && (!category || u.category === category) && u.iou >= minIou)
    .sort((a, b) => {
      const order = typeof a[key] === "string" ? a[key].localeCompare(b[key]) : a[key] - b[key];
      return view.descending ? -order : order;
    });
  const body = $("rows");
  body.replaceChildren();
  for (const unit of rows) {
    const tr = document.createElement("tr");
    tr.className = unit.interpretable ? "" : "low";
    tr.dataset.unit = String(unit.unit);
    const pick = document.createElement("input");
    pick.type = "checkbox";
    pick.checked = view.selected.has(unit.unit);
    pick.setAttribute("aria-label", `select unit ${unit.unit}`);
    pick.addEventListener("change", () => {
      pick.checked ? view.selected.add(unit.unit) : view.selected.delete(unit.unit);
      $("selected-count").textContent = `${view.selected.size} selected`;
    });
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = `top images of unit ${unit.unit}`;
    img.src = api.unitStripUrl(view.model, view.layer, unit.unit, 6);
    const link = document.createElement("a");
    link.href = `/?model=${encodeURIComponent(view.model)}&layer=${view.layer}&units=${unit.unit}&name=${encodeURIComponent(`unit ${unit.unit} (${unit.label})`)}`;
    link.textContent = "paint with this unit";
    const cells = [pick, String(unit.unit), unit.label, unit.category, unit.iou.toFixed(3), img, link];
    for (const content of cells) {
      const td = document.createElement("td");
      td.append(content);
      tr.append(td);
    }
    body.append(tr);
  }
  $("summary").textContent = `${view.model} ${view.layer}: ${table.interpretable}/${table.units.length} units with IoU > ${table.config.min_iou}${table.min_iqr != null ? ` and IQR > ${table.min_iqr}` : ""}` +
    ` (${table.config.samples} samples, ${table.config.threshold === "iqr" ? "per-unit IQR thresholds" : `top ${(table.config.quantile * 100).toFixed(1)}% threshold`}) — showing ${rows.length}`;
}

// "unit N draws trees": before / after pictures of each concept's strongest single drawing unit
function gridMask(grid, cellY, cellX, size = 2) {
  const canvas = createMaskCanvas(grid);  // one mask pixel per layer cell, encoded as strokes are
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(cellX, cellY, size, size);
  return encodeMask(canvas);
}

const GALLERY_MIN_SHARE = 0.1;

function galleryShow(entry) {
  // a single unit that draws the concept, else the smallest set of the brush's units that does
  if (entry.share >= GALLERY_MIN_SHARE) {
    return { units: [entry.unit], sample: entry.sample, cell: entry.cell, share: entry.share, single: true };
  }
  if (entry.set) return { ...entry.set, single: false };
  return null;
}

function renderGallery(table) {
  const all = Object.entries(table.gallery || {});
  const shown = all.map(([c, e]) => [c, galleryShow(e)]).filter(([, e]) => e);
  const none = all.filter(([, e]) => !galleryShow(e)).map(([c]) => c);
  $("gallery-section").hidden = all.length === 0;
  $("gallery-none").textContent = none.length
    ? `Neither a single unit nor a set of up to 64 of the brush's units draws ${none.join(", ")} ` +
      `(under ${GALLERY_MIN_SHARE * 100}% of the painted cells, or under half of what the whole brush draws).` : "";
  const holder = $("gallery");
  holder.replaceChildren();
  const grid = table.shape[1];
  for (const [concept, entry] of shown) {
    const figure = document.createElement("figure");
    figure.className = "gallery-item";
    figure.dataset.concept = concept;
    figure.dataset.units = entry.units.join(",");
    const before = new Image();
    before.alt = `sample ${entry.sample} before`;
    before.src = api.sampleUrl(view.model, entry.sample);
    const after = new Image();
    const named = entry.units.length === 1 ? `unit ${entry.units[0]}` : `${entry.units.length} units`;
    after.alt = `sample ${entry.sample} with ${named} switched on`;
    const caption = document.createElement("figcaption");
    const share = `${Math.round(entry.share * 100)}% of painted regions`;
    caption.textContent = entry.single
      ? `unit ${entry.units[0]} draws ${concept} (${share})`
      : `${entry.units.length} units draw ${concept} together (${share}` +
        (entry.brush_share != null ? `; the whole brush ${Math.round(entry.brush_share * 100)}%)` : ")") +
        `: ${entry.units.slice(0, 12).join(", ")}${entry.units.length > 12 ? ", ..." : ""}`;
    const recipe = { v: 1, model: view.model, layer: view.layer, sample: entry.sample,
      strokes: [{ units: entry.units, action: "add", strength: 1.0, mask: gridMask(grid, entry.cell[0], entry.cell[1]) }] };
    api.renderPng(recipe).then((blob) => { after.src = URL.createObjectURL(blob); }).catch(() => { after.alt = "render failed"; });
    const pair = document.createElement("div");
    pair.className = "pair";
    pair.style.setProperty("--cell-top", `${(100 * entry.cell[0]) / grid}%`);
    pair.style.setProperty("--cell-left", `${(100 * entry.cell[1]) / grid}%`);
    pair.style.setProperty("--cell-size", `${(200 / grid)}%`);
    const frame = document.createElement("div");
    frame.className = "after";
    frame.append(after);
    pair.append(before, frame);
    figure.append(pair, caption);
    for (const unit of entry.units.slice(0, 3)) {  // where each unit fires (its top images, as GAN Dissection shows units)
      const link = document.createElement("a");
      link.href = `/unit?model=${encodeURIComponent(view.model)}&layer=${view.layer}&unit=${unit}`;
      const strip = new Image();
      strip.className = "strip";
      strip.alt = `unit ${unit}: top images`;
      strip.loading = "lazy";
      strip.src = api.unitStripUrl(view.model, view.layer, unit, 4);
      link.append(strip);
      figure.append(link);
    }
    holder.append(figure);
  }
}

async function loadTable() {
  try {
    view.table = await api.dissection(view.model, view.layer);
    banner("", "");
  } catch (error) {
    if (error.code === "tables_building") {
      banner("info", `dissection running: ${error.message}`);
      setTimeout(loadTable, 2000);
    } else {
      banner("error", error.message);
    }
    return;
  }
  const select = $("filter-category");
  select.replaceChildren(new Option("all", ""));
  for (const c of view.table.categories) select.append(new Option(c, c));
  drawBars(view.table);
  renderRows();
  renderGallery(view.table);
  document.body.dataset.ready = "true";
}

async function loadModel(modelId) {
  const info = await api.model(modelId);
  view.model = modelId;
  const params = new URLSearchParams(location.search);
  view.layer = params.get("layer") || info.edit_layer;
  $("layer-select").replaceChildren();
  for (const l of info.layers.filter((l) => l.name.startsWith("layer"))) {
    const option = new Option(`${l.name} (${l.shape[0]} units)`, l.name);
    option.selected = l.name === view.layer;
    $("layer-select").append(option);
  }
  await loadTable();
}

for (const button of document.querySelectorAll("th button[data-sort]")) {
  button.addEventListener("click", () => {
    const key = button.dataset.sort;
    view.descending = view.sort === key ? !view.descending : key === "iou";
    view.sort = key;
    for (const b of document.querySelectorAll("th button[data-sort]")) b.removeAttribute("aria-sort");
    button.setAttribute("aria-sort", view.descending ? "descending" : "ascending");
    renderRows();
  });
}
for (const id of ["filter-label", "filter-category", "filter-iou"]) $(id).addEventListener("input", renderRows);
$("layer-select").addEventListener("change", () => {
  view.layer = $("layer-select").value;
  loadTable();
});
$("model-select").addEventListener("change", () => loadModel($("model-select").value));
$("save-brush").addEventListener("click", () => {
  const name = $("brush-name").value.trim() || `units ${[...view.selected].join(",")}`;
  if (!view.selected.size) {
    banner("warn", "select units first");
    return;
  }
  saveCustomBrush({ name, units: [...view.selected], model: view.model, layer: view.layer });
  banner("info", `saved brush "${name}" — it appears in the painter for ${view.model} ${view.layer}`);
});

(async () => {
  const list = await api.models();
  for (const m of list) $("model-select").append(new Option(m.id, m.id));
  const params = new URLSearchParams(location.search);
  const modelId = params.get("model") || (list.find((m) => m.default) || list[0]).id;
  $("model-select").value = modelId;
  await loadModel(modelId);
})().catch((error) => banner("error", `could not start: ${error.message}`));
