// Painter state: the recipe being edited, undo/redo of the stroke list, and the URL fragment.

export class History {
  constructor() {
    this.strokes = [];
    this.redoStack = [];
  }
  push(stroke) {
    this.strokes = [...this.strokes, stroke];
    this.redoStack = [];
  }
  undo() {
    if (!this.strokes.length) return false;
    this.redoStack = [...this.redoStack, this.strokes[this.strokes.length - 1]];
    this.strokes = this.strokes.slice(0, -1);
    return true;
  }
  redo() {
    if (!this.redoStack.length) return false;
    this.strokes = [...this.strokes, this.redoStack[this.redoStack.length - 1]];
    this.redoStack = this.redoStack.slice(0, -1);
    return true;
  }
  reset() {
    if (!this.strokes.length) return false;
    this.strokes = [];
    this.redoStack = [];
    return true;
  }
  remove(index) {
    this.strokes = this.strokes.filter((_, i) => i !== index);
  }
  toggle(index) {
    this.strokes = this.strokes.map((s, i) => (i === index ? { ...s, enabled: !s.enabled } : s));
  }
}

// What the server needs from a stroke (drop UI-only fields).
export function wireStroke(stroke) {
  const out = { action: stroke.action, strength: stroke.strength, mask: stroke.mask };
  if (stroke.action !== "erase") {
    if (stroke.units) out.units = stroke.units;
    else out.brush = stroke.brush;
  }
  return out;
}

// The picture painted: an uploaded picture ({upload: id}) or a GAN sample ({sample: id}).
export function source(view) {
  return view.upload ? { upload: view.upload } : { sample: view.sample };
}

export function buildRecipe(view, strokes) {
  return {
    v: 1, model: view.model, layer: view.layer, ...source(view),
    strokes: strokes.filter((s) => s.enabled !== false).map(wireStroke),
  };
}

// Fragment: base64url(JSON{model, layer, sample | upload, strokes with names/enabled}); same state -> same image.
export function encodeFragment(view, strokes) {
  const json = JSON.stringify({ v: 1, model: view.model, layer: view.layer, ...source(view), strokes });
  const bytes = new TextEncoder().encode(json);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return "#r=" + btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function decodeFragment(hash) {
  const match = /^#r=([A-Za-z0-9_-]+)$/.exec(hash || "");
  if (!match) return null;
  try {
    const b64 = match[1].replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(b64 + "===".slice((b64.length + 3) % 4));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const state = JSON.parse(new TextDecoder().decode(bytes));
    const upload = typeof state.upload === "string" && /^[0-9a-f]{32}$/.test(state.upload);
    if (state.v !== 1 || typeof state.model !== "string" || !(Number.isInteger(state.sample) || upload)) return null;
    return state;
  } catch (_) {
    return null;
  }
}

// Custom brushes (named unit sets) saved in this browser.
const CUSTOM_KEY = "ganpaint-custom-brushes";
export function customBrushes() {
  try {
    return JSON.parse(localStorage.getItem(CUSTOM_KEY) || "[]");
  } catch (_) {
    return [];
  }
}
export function saveCustomBrush(brush) {
  const all = customBrushes().filter((b) => !(b.name === brush.name && b.model === brush.model && b.layer === brush.layer));
  all.push(brush);
  localStorage.setItem(CUSTOM_KEY, JSON.stringify(all));
}
