// A client of the live feed at /ws that reconnects by itself and resumes where it stopped.
//
// Protocol (version 1, docs/feed.md): the server sends {"op": "hello", "last_id"} first. The client
// subscribes with {"op": "subscribe", "topics": [...], "after": id}, and the server replays the stored
// events after that id ("after" is accepted on the first subscribe of a connection only). Events arrive
// as {"op": "event", "id", "type", "payload", ...}. A {"op": "reset"} frame means the events after "after"
// are gone, so the client reloads its state from the JSON API while the stream goes on live.

const MIN_DELAY_MS = 1000;
const MAX_DELAY_MS = 30000;

export class Feed {
  /**
   * @param topics the topics to follow, such as ["whale-trades", "jobs"]
   * @param handlers onEvent(frame), onReset(frame), onState(text) where text is "live", "connecting" or
   *   "reconnecting"
   * @param token the access token or null. Browsers cannot set headers on a websocket, so the token goes
   *   in the query string. The server's access log redacts it.
   */
  constructor(topics, handlers, token) {
    this.topics = topics;
    this.handlers = handlers;
    this.token = token;
    this.lastId = null;
    this.delay = MIN_DELAY_MS;
    this.socket = null;
    this.timer = null;
    this.connections = 0;
    this.helloId = null;
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = this.token ? `?access_token=${encodeURIComponent(this.token)}` : "";
    return `${scheme}//${location.host}/ws${query}`;
  }

  start() {
    this.handlers.onState(this.connections === 0 ? "connecting" : "reconnecting");
    const socket = new WebSocket(this.url());
    this.socket = socket;
    socket.addEventListener("message", (message) => this.receive(message.data));
    socket.addEventListener("close", () => this.closed(socket));
  }

  /** Close the current connection; the feed reconnects and resumes (tests and token changes use this). */
  restart(token = this.token) {
    this.token = token;
    this.delay = 0;
    if (this.socket) this.socket.close(4000, "client restart");
  }

  receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame.op === "hello") this.greet(frame);
    else if (frame.op === "subscribed") this.handlers.onState("live");
    else if (frame.op === "event") this.deliver(frame);
    else if (frame.op === "reset") this.reset(frame);
    else if (frame.op === "error") console.warn("feed: the server rejected a request:", frame.message);
  }

  greet(hello) {
    this.connections += 1;
    this.helloId = hello.last_id;
    this.delay = MIN_DELAY_MS;
    // The first connection starts at the newest event the hello names, so that an event committed between
    // the hello and the subscribe is not lost. Later connections resume after the last event handled.
    if (this.lastId === null) this.lastId = hello.last_id;
    const request = { op: "subscribe", topics: this.topics, after: this.lastId, ref: "dashboard" };
    this.socket.send(JSON.stringify(request));
  }

  deliver(frame) {
    if (this.lastId !== null && frame.id <= this.lastId) return;
    this.lastId = frame.id;
    this.handlers.onEvent(frame);
  }

  reset(frame) {
    this.lastId = frame.resume_after;
    this.handlers.onReset(frame);
  }

  closed(socket) {
    if (socket !== this.socket) return;
    this.socket = null;
    this.handlers.onState("reconnecting");
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.start(), this.delay);
    this.delay = Math.min(Math.max(this.delay * 2, MIN_DELAY_MS), MAX_DELAY_MS);
  }
}
