// Sign-in for token mode: POST /api/login sets an HttpOnly session cookie, then back to the page asked for.
const form = document.getElementById("login-form");
const error = document.getElementById("login-error");

// Where to go after signing in: only a page of this server. The address is resolved the way the
// browser will resolve it (so "/\\evil.example" or "//evil.example", which browsers read as another
// host, are refused), and only its path, query and fragment are kept.
export function nextPage(next = new URLSearchParams(location.search).get("next")) {
  if (!next) return "/";
  let url;
  try {
    url = new URL(next, location.origin);
  } catch (_) {
    return "/";
  }
  if (url.origin !== location.origin || !next.startsWith("/")) return "/";
  return url.pathname + url.search + url.hash;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  const token = document.getElementById("token").value;
  const response = await fetch("/api/login", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token }),
    credentials: "same-origin",
  });
  if (response.status === 204) return location.assign(nextPage());
  if (response.status === 401) return (error.textContent = "wrong token");
  const body = await response.json().catch(() => null);
  error.textContent = body && body.error ? body.error.message : `sign-in failed (HTTP ${response.status})`;
});
