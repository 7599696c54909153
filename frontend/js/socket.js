// The painting websocket (protocol v1): sequence numbers, stale answers dropped, reconnect with backoff.

export class PaintSocket extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.seq = 0;
    this.shownSeq = -1;
    this.pendingHeader = null;
    this.backoff = 500;
    this.closedByUser = false;
    this.connect();
  }

  connect() {
    this.emit("status", { state: "connecting" });
    const protocols = ["ganpaint.v1"];
    const token = sessionStorage.getItem("ganpaint-token");
    if (token) protocols.push("token." + token);
    const ws = new WebSocket(this.url, protocols);
    ws.binaryType = "blob";
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = 500;
      this.emit("status", { state: "open" });
    };
    ws.onmessage = (event) => this.onMessage(event);
    ws.onclose = async (event) => {
      if (this.ws !== ws) return;
      this.pendingHeader = null;
      if (this.closedByUser) return;
      if (event.code === 1008) {
        // refused by policy; the reason says what to change. A page reached under a host name the
        // server does not allow: no retry would help, so say why and stop.
        if (event.reason.startsWith("origin")) {
          this.emit("status", { state: "refused", reason: event.reason });
          return;
        }
        // sign in when the server wants a token this browser lacks (the #r= share link survives)
        const state = await fetch("/api/session").then((r) => r.json()).catch(() => null);
        if (state && state.token_required && !state.authenticated) {
          location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search + location.hash));
          return;
        }
      }
      this.emit("status", { state: "closed", code: event.code, retryIn: this.backoff });
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 8000);
    };
  }

  get open() {
    return this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  // Send a recipe; returns its seq (or -1 when not connected; the caller resends on reconnect).
  send(recipe, preview = false) {
    if (!this.open) return -1;
    const seq = ++this.seq;
    this.ws.send(JSON.stringify({ v: 1, type: "edit", seq, preview, recipe }));
    return seq;
  }

  onMessage(event) {
    if (typeof event.data === "string") {
      const message = JSON.parse(event.data);
      if (message.type === "image") this.pendingHeader = message;
      else if (message.type === "error") this.emit("error", message);
      return;
    }
    const header = this.pendingHeader;
    this.pendingHeader = null;
    if (!header || header.seq < this.shownSeq) return; // stale: a newer answer is already shown
    this.shownSeq = header.seq;
    this.emit("image", { header, blob: event.data });
  }

  // Test and debugging hook: drop the connection as a network failure would.
  dropConnection() {
    if (this.ws) this.ws.close(4000, "dropped");
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
