// Sign-in for token mode: POST /api/login sets an HttpOnly session cookie, then back to the page asked for.
const form = document.getElementById("login-form");
const error = document.getElementById("login-error");

function nextPage() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  // only paths on this server (never "//host" or "https://...")
  return next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  const token = document.getElementById("token").value;
  const response = await fetch("/api/login", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token }),
    credentials: "same-origin",
  });
  if (response.status === 204) location.assign(nextPage());
  else error.textContent = response.status === 401 ? "wrong token" : `sign-in failed (HTTP ${response.status})`;
});
