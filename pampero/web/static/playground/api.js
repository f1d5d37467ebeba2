// Talking to this server: the API key (local storage only, never in a URL), fetch with the key,
// OpenAI error bodies, and server-sent events read from a fetch body.

const KEY = "pampero.apiKey";

export function getKey() {
  return window.localStorage.getItem(KEY) || "";
}

export function setKey(key) {
  if (key) window.localStorage.setItem(KEY, key);
  else window.localStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function headers(extra = {}) {
  const key = getKey();
  const result = { ...extra };
  if (key) result.Authorization = "Bearer " + key;
  return result;
}

// The message of an OpenAI error body, or the status text when the body is not one.
export async function errorOf(response) {
  let body = null;
  let message = `${response.status} ${response.statusText}`;
  try {
    body = await response.json();
    const error = body && body.error;
    if (error && typeof error.message === "string") {
      message = `${response.status}: ${error.message}`;
      if (error.param) message += ` (param: ${error.param})`;
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, message, body);
}

export async function getJson(path) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

// Yields each `data:` payload of an event stream, parsed as JSON, until `[DONE]`.
export async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const data = block
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      yield JSON.parse(data);
    }
  }
}
