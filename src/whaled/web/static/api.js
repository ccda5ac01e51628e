// Requests to the JSON API with the access token, when one is needed.
//
// The token may arrive once in the page address (?access_token=... or #access_token=...). It is then kept
// in sessionStorage for this tab only and removed from the address bar, and sent as a bearer header.

const TOKEN_KEY = "whaled.access_token";
const TOKEN_PARAMETER = "access_token";

export class AuthRequired extends Error {}

export function takeToken() {
  const url = new URL(location.href);
  const hash = new URLSearchParams(url.hash.slice(1));
  const tokenInUrl = url.searchParams.get(TOKEN_PARAMETER) || hash.get(TOKEN_PARAMETER);
  if (tokenInUrl) {
    sessionStorage.setItem(TOKEN_KEY, tokenInUrl);
    url.searchParams.delete(TOKEN_PARAMETER);
    hash.delete(TOKEN_PARAMETER);
    url.hash = hash.toString();
    history.replaceState(null, "", url.toString());
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  headers(extra = {}) {
    return this.token ? { ...extra, Authorization: `Bearer ${this.token}` } : extra;
  }

  async request(path, options = {}) {
    const response = await fetch(path, { ...options, headers: this.headers(options.headers), cache: "no-store" });
    if (response.status === 401) throw new AuthRequired("the server requires the access token");
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok && response.status !== 409) {
      const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
      throw new Error(`${path}: ${message}`);
    }
    return body;
  }

  get(path) {
    return this.request(path);
  }

  post(path) {
    return this.request(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
  }
}
