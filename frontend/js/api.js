// REST helpers: JSON and image requests with the optional bearer token and one error shape.

export function token() {
  return sessionStorage.getItem("ganpaint-token") || "";
}

function headers(extra = {}) {
  const h = { ...extra };
  if (token()) h.Authorization = `Bearer ${token()}`;
  return h;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Token mode: a page without the session cookie goes to the sign-in page and comes back afterwards,
// to the same place (a share link's #r= fragment included).
export function signIn() {
  location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search + location.hash));
}

async function check(response) {
  if (response.ok) return response;
  if (response.status === 401 && !token()) signIn();
  let code = "http_" + response.status;
  let message = response.statusText;
  try {
    const body = await response.json();
    code = body.error.code;
    message = body.error.message;
  } catch (_) { /* not JSON */ }
  throw new ApiError(response.status, code, message);
}

export async function getJSON(path) {
  const response = await fetch(path, { headers: headers() });
  return (await check(response)).json();
}

export async function postJSON(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body),
  });
  return check(response);
}

// Cancel a job (DELETE /api/jobs/{id}); a job that already ended is left as it is.
export async function cancelJob(id) {
  await fetch(`/api/jobs/${id}`, { method: "DELETE", headers: headers() }).catch(() => {});
}

export const models = () => getJSON("/api/models");
export const model = (id) => getJSON(`/api/models/${encodeURIComponent(id)}`);
export const brushes = (id, layer) => getJSON(`/api/models/${encodeURIComponent(id)}/layers/${layer}/brushes`);
export const dissection = (id, layer) => getJSON(`/api/models/${encodeURIComponent(id)}/layers/${layer}/dissection`);
export const samplePage = (id, params) =>
  getJSON(`/api/models/${encodeURIComponent(id)}/samples?` + new URLSearchParams(params));
export const sampleUrl = (id, sample) => `/api/models/${encodeURIComponent(id)}/samples/${sample}.png`;
export const unitStripUrl = (id, layer, unit, count = 6) =>
  `/api/models/${encodeURIComponent(id)}/layers/${layer}/units/${unit}/top.png?count=${count}`;
// Upload a picture to paint: multipart POST /api/uploads; the answer names its inversion job.
export async function uploadPicture(file, modelId) {
  const form = new FormData();
  form.append("image", file, file.name || "picture.png");
  if (modelId) form.append("model", modelId);
  const response = await fetch("/api/uploads", { method: "POST", headers: headers(), body: form });
  return (await check(response)).json();
}
export const uploadInfo = (id) => getJSON(`/api/uploads/${id}`);
export async function invertUpload(id) {
  return (await postJSON(`/api/uploads/${id}/invert`, {})).json();
}
export const uploadFileUrl = (id, name) => `/api/uploads/${id}/files/${name}`;

// Follow a job's state on /ws/jobs/{id} until it ends; onUpdate gets each state.
export function followJob(id, onUpdate) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/jobs/${id}`);
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "error") return reject(new Error(message.message));
      onUpdate(message);
      if (message.status === "done") resolve(message);
      else if (["failed", "cancelled", "interrupted"].includes(message.status)) reject(new Error(message.error || message.status));
    };
    ws.onerror = () => reject(new Error("job updates failed"));
  });
}

export async function renderPng(recipe) {
  return (await postJSON("/api/render", recipe)).blob();
}
