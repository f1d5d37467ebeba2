// The playground page: model picker, conversation, streaming with stop, images, the last
// answer's figures and its request as code. Modules: api.js (key, fetch, SSE), request.js
// (the body from the form), snippets.js (copy as code), usage.js (the usage view).

import { errorOf, events, getJson, getKey, headers, setKey } from "./api.js";
import { buildBody, constraintFields, markField, toolFields } from "./request.js";
import { SNIPPETS } from "./snippets.js";
import { loadUsage } from "./usage.js";

const $ = (id) => document.getElementById(id);
const CHAT_PATH = "/v1/chat/completions";

const state = {
  models: new Map(), // id -> model object
  history: [], // messages sent and answered (the system prompt is added per request)
  attachments: [], // data: URIs waiting to be sent
  controller: null,
  lastRequest: null,
  keyed: false, // the server answered 401 once: snippets send the key
};

// -- errors and the key -------------------------------------------------------------------

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

let retryAfterKey = null;

function askForKey(reason, retry = null) {
  state.keyed = true;
  retryAfterKey = retry;
  $("key-reason").textContent = reason;
  $("key-input").value = getKey();
  if (!$("key-dialog").open) $("key-dialog").showModal();
  $("key-input").focus();
}

$("key-dialog").addEventListener("close", () => {
  if ($("key-dialog").returnValue !== "save") return;
  setKey($("key-input").value.trim());
  showError("");
  const retry = retryAfterKey;
  retryAfterKey = null;
  if (retry) retry();
});

$("key-button").addEventListener("click", () =>
  askForKey("The API key is kept in this browser's local storage and sent only to this server."),
);
$("key-forget").addEventListener("click", () => {
  setKey("");
  $("key-input").value = "";
  $("key-dialog").close("cancel");
});

const MISSING_KEY =
  "This server needs an API key. It is kept in this browser's local storage and sent only to this server.";
const WRONG_KEY = "The server refused this API key (401). Enter another one.";

// -- models ---------------------------------------------------------------------------------

function capabilities() {
  const model = state.models.get($("model").value);
  return (model && model.capabilities) || {};
}

// Greys out what the chosen model cannot do (a capability it does not list is assumed).
function applyCapabilities() {
  const caps = capabilities();
  const vision = caps.vision !== false;
  const tools = caps.tools !== false;
  const structured = caps.structured_outputs !== false;
  $("attach").disabled = !vision;
  $("attach-label").classList.toggle("disabled", !vision);
  $("attach-label").title = vision ? "" : "This model does not accept images";
  $("tools-text").disabled = !tools;
  $("tool-choice").disabled = !tools;
  $("tools-box").classList.toggle("unavailable", !tools);
  $("constraint-kind").disabled = !structured;
  syncConstraintEditor();
  const names = ["vision", "tools", "structured_outputs", "logprobs"];
  const shown = names.map((n) => (caps[n] === false ? `no ${n.replace("_", " ")}` : caps[n] ? n.replace("_", " ") : null));
  const model = state.models.get($("model").value);
  const context = model && model.context_length ? `${model.context_length.toLocaleString("en")} tokens` : null;
  $("model-caps").textContent = [context, ...shown].filter(Boolean).join(" · ");
  renderAttachments();
}

async function loadModels() {
  let list;
  try {
    list = await getJson("/v1/models");
  } catch (error) {
    if (error.status === 401) {
      askForKey(getKey() ? WRONG_KEY : MISSING_KEY, loadModels);
      showError("This server needs an API key: " + error.message);
    } else showError("Could not list the models: " + error.message);
    return;
  }
  showError("");
  const select = $("model");
  const previous = select.value || window.localStorage.getItem("pampero.model");
  select.replaceChildren();
  state.models.clear();
  const models = document.createElement("optgroup");
  models.label = "Models";
  const aliases = document.createElement("optgroup");
  aliases.label = "Aliases";
  for (const model of list.data) {
    state.models.set(model.id, model);
    const option = document.createElement("option");
    option.value = model.id;
    option.textContent = model.parent ? `${model.id} → ${model.parent}` : model.id;
    (model.parent ? aliases : models).append(option);
  }
  select.append(models);
  if (aliases.children.length) select.append(aliases);
  if (previous && state.models.has(previous)) select.value = previous;
  applyCapabilities();
}

$("model").addEventListener("change", () => {
  window.localStorage.setItem("pampero.model", $("model").value);
  applyCapabilities();
});

// -- attachments ------------------------------------------------------------------------------

function readAsDataUri(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function attach(files) {
  const images = [...files].filter((f) => f.type.startsWith("image/"));
  if (!images.length) return;
  if (capabilities().vision === false) {
    showError(`The model ${$("model").value} does not accept images; pick a vision model.`);
    return;
  }
  for (const file of images) state.attachments.push(await readAsDataUri(file));
  renderAttachments();
}

function renderAttachments() {
  const holder = $("attachments");
  holder.replaceChildren();
  state.attachments.forEach((uri, i) => {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = uri;
    img.alt = `Attached image ${i + 1}`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove image ${i + 1}`);
    remove.addEventListener("click", () => {
      state.attachments.splice(i, 1);
      renderAttachments();
    });
    figure.append(img, remove);
    holder.append(figure);
  });
}

$("attach").addEventListener("change", async (event) => {
  await attach(event.target.files);
  event.target.value = "";
});
$("prompt").addEventListener("paste", (event) => {
  const files = [...(event.clipboardData?.files || [])];
  if (files.length) {
    event.preventDefault();
    attach(files);
  }
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("dragging");
});
drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("dragging");
  attach(event.dataTransfer.files);
});

// -- editors ----------------------------------------------------------------------------------

const EXAMPLES = {
  json_schema: JSON.stringify(
    { type: "object", properties: { name: { type: "string" }, age: { type: "integer" } }, required: ["name", "age"], additionalProperties: false },
    null,
    2,
  ),
  regex: "(yes|no)",
  choice: "positive\nnegative\nneutral",
  grammar: 'root ::= "yes" | "no"',
};

function syncConstraintEditor() {
  const kind = $("constraint-kind").value;
  const editor = $("constraint-text");
  editor.disabled = $("constraint-kind").disabled || kind === "none" || kind === "json_object";
  if (EXAMPLES[kind] && !editor.value.trim()) editor.value = EXAMPLES[kind];
  if (!EXAMPLES[kind]) editor.value = "";
  validateConstraint();
}

function validateConstraint() {
  return markField("constraint-text", "constraint-error", $("constraint-kind").disabled ? {} : constraintFields());
}

function validateTools() {
  return markField("tools-text", "tools-error", $("tools-text").disabled ? {} : toolFields());
}

$("constraint-kind").addEventListener("change", () => {
  $("constraint-text").value = "";
  syncConstraintEditor();
});
$("constraint-text").addEventListener("input", validateConstraint);
$("tools-text").addEventListener("input", validateTools);

// -- the conversation -------------------------------------------------------------------------

function messageElement(role) {
  const element = document.createElement("article");
  element.className = `message ${role}`;
  const label = document.createElement("div");
  label.className = "role";
  label.textContent = role;
  const content = document.createElement("div");
  content.className = "content";
  element.append(label, content);
  $("messages").append(element);
  return element;
}

function showUserMessage(text, images) {
  const element = messageElement("user");
  element.querySelector(".content").textContent = text;
  for (const [i, uri] of images.entries()) {
    const img = document.createElement("img");
    img.src = uri;
    img.alt = `Sent image ${i + 1}`;
    element.append(img);
  }
}

// What an answer is built of while it arrives: content, reasoning (collapsed), tool calls.
class Answer {
  constructor() {
    this.element = messageElement("assistant");
    this.element.classList.add("streaming");
    this.content = "";
    this.reasoning = "";
    this.toolCalls = [];
    this.finish = null;
  }

  addReasoning(text) {
    if (!text) return;
    this.reasoning += text;
    let details = this.element.querySelector("details.reasoning");
    if (!details) {
      details = document.createElement("details");
      details.className = "reasoning";
      const summary = document.createElement("summary");
      summary.textContent = "Reasoning";
      const body = document.createElement("div");
      body.className = "reasoning-text";
      details.append(summary, body);
      this.element.querySelector(".role").after(details);
    }
    details.querySelector(".reasoning-text").textContent = this.reasoning;
  }

  addContent(text) {
    if (!text) return;
    this.content += text;
    this.element.querySelector(".content").textContent = this.content;
  }

  addToolCalls(deltas) {
    for (const delta of deltas || []) {
      const index = delta.index ?? this.toolCalls.length;
      const call = (this.toolCalls[index] ||= { id: "", type: "function", function: { name: "", arguments: "" } });
      if (delta.id) call.id = delta.id;
      if (delta.function?.name) call.function.name += delta.function.name;
      if (delta.function?.arguments) call.function.arguments += delta.function.arguments;
    }
    if (!this.toolCalls.length) return;
    let box = this.element.querySelector(".tool-calls");
    if (!box) {
      box = document.createElement("div");
      box.className = "tool-calls";
      this.element.append(box);
    }
    box.textContent = this.toolCalls.map((c) => `${c.function.name}(${c.function.arguments})`).join("\n");
  }

  done(finish) {
    this.finish = finish;
    this.element.classList.remove("streaming");
    const note = document.createElement("div");
    note.className = "finish";
    note.textContent = finish;
    this.element.append(note);
  }

  message() {
    const message = { role: "assistant", content: this.content };
    if (this.toolCalls.length) message.tool_calls = this.toolCalls;
    return message;
  }
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
  $("model").disabled = busy;
}

function userMessage(text, images) {
  if (!images.length) return { role: "user", content: text };
  const parts = [];
  if (text) parts.push({ type: "text", text });
  for (const url of images) parts.push({ type: "image_url", image_url: { url } });
  return { role: "user", content: parts };
}

async function send() {
  showError("");
  const text = $("prompt").value.trim();
  const images = [...state.attachments];
  if (!text && !images.length) {
    showError("Write a message first.");
    return;
  }
  const caps = capabilities();
  if (!validateConstraint() || !validateTools()) {
    showError("Fix the highlighted editor first.");
    return;
  }
  const turn = userMessage(text, images);
  const built = buildBody({
    model: $("model").value,
    history: [...state.history, turn],
    stream: $("stream").checked,
    toolsEnabled: caps.tools !== false,
    constraintsEnabled: caps.structured_outputs !== false,
  });
  if (built.error) {
    showError(built.error);
    return;
  }
  const body = built.body;
  state.lastRequest = { url: new URL(CHAT_PATH, window.location.href).href, body };
  showUserMessage(text, images);
  state.history.push(turn);
  $("prompt").value = "";
  state.attachments = [];
  renderAttachments();

  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  const answer = new Answer();
  const timing = { start: performance.now(), first: null, end: null };
  let usage = null;
  let provider = null;
  let finish = null;
  let failed = false;
  try {
    const response = await fetch(CHAT_PATH, {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) {
      const error = await errorOf(response);
      failed = true;
      answer.element.remove();
      state.history.pop();
      $("messages").lastElementChild?.remove();
      $("prompt").value = text;
      state.attachments = images;
      renderAttachments();
      if (response.status === 401) {
        showError("This server needs an API key: " + error.message);
        askForKey(getKey() ? WRONG_KEY : MISSING_KEY, send);
      } else {
        showError(error.message);
      }
      return;
    }
    const chunks = body.stream ? events(response) : single(response);
    for await (const chunk of chunks) {
      if (chunk.error) {
        failed = true;
        showError("The stream failed: " + (chunk.error.message || JSON.stringify(chunk.error)));
        break;
      }
      if (chunk.provider) provider = chunk.provider;
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices || []) {
        const delta = choice.delta || choice.message || {};
        const reasoning = delta.reasoning_content ?? delta.reasoning;
        if (timing.first === null && (delta.content || reasoning || delta.tool_calls)) {
          timing.first = performance.now();
        }
        answer.addReasoning(reasoning);
        answer.addContent(delta.content);
        answer.addToolCalls(delta.tool_calls);
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
  } catch (error) {
    if (error.name === "AbortError") finish = "stopped";
    else {
      failed = true;
      showError("The request failed: " + error.message);
    }
  } finally {
    timing.end = performance.now();
    state.controller = null;
    setBusy(false);
  }
  if (failed && !answer.content) {
    answer.element.classList.remove("streaming");
    return;
  }
  answer.done(finish || "stopped");
  state.history.push(answer.message());
  showStats({ usage, provider, timing, finish: finish || "stopped" });
}

async function* single(response) {
  yield await response.json();
}

function stop() {
  if (state.controller) state.controller.abort();
}

// -- the last answer's figures ------------------------------------------------------------------

function showStats({ usage, provider, timing, finish }) {
  const list = $("stats-list");
  list.replaceChildren();
  const ttft = timing.first === null ? null : timing.first - timing.start;
  const completion = usage ? usage.completion_tokens : null;
  const generating = timing.first === null ? null : (timing.end - timing.first) / 1000;
  const rate = completion && generating > 0 ? completion / generating : null;
  const cached = usage?.prompt_tokens_details?.cached_tokens;
  const items = [
    ["tokens in", "stat-in", usage ? usage.prompt_tokens : "—"],
    ["tokens out", "stat-out", usage ? usage.completion_tokens : "—"],
    ["cached", "stat-cached", cached ?? "—"],
    ["TTFT", "stat-ttft", ttft === null ? "—" : `${Math.round(ttft)} ms`],
    ["tokens/s", "stat-rate", rate === null ? "—" : rate.toFixed(1)],
    ["cost", "stat-cost", usage && typeof usage.cost === "number" ? `$${usage.cost.toFixed(6)}` : "—"],
    ["provider", "stat-provider", provider || "local"],
    ["finish", "stat-finish", finish],
  ];
  for (const [name, id, value] of items) {
    const div = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = String(value);
    dd.id = id;
    div.append(dt, dd);
    list.append(div);
  }
  $("stats").hidden = false;
  $("snippet").hidden = true;
}

async function copySnippet(language) {
  if (!state.lastRequest) return;
  const { url, body } = state.lastRequest;
  const code = SNIPPETS[language](url, body, state.keyed || Boolean(getKey()));
  const pre = $("snippet");
  pre.textContent = code;
  pre.dataset.lang = language;
  pre.hidden = false;
  try {
    await navigator.clipboard.writeText(code);
    $("copy-status").textContent = `Copied the ${language} request.`;
  } catch {
    $("copy-status").textContent = "Select the code below to copy it.";
  }
}

for (const id of ["copy-curl", "copy-python", "copy-js"]) {
  $(id).addEventListener("click", () => copySnippet($(id).dataset.lang));
}

// -- wiring -----------------------------------------------------------------------------------

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    if (!$("send").disabled) send();
  }
});
$("stop").addEventListener("click", stop);
$("clear").addEventListener("click", () => {
  stop();
  state.history = [];
  $("messages").replaceChildren();
  $("stats").hidden = true;
  showError("");
});

function showView(name) {
  const usage = name === "usage";
  $("view-chat").hidden = usage;
  $("view-usage").hidden = !usage;
  $("tab-chat").setAttribute("aria-pressed", String(!usage));
  $("tab-usage").setAttribute("aria-pressed", String(usage));
  if (usage) loadUsage(() => askForKey(getKey() ? WRONG_KEY : MISSING_KEY, () => showView("usage")));
}

$("tab-chat").addEventListener("click", () => showView("chat"));
$("tab-usage").addEventListener("click", () => showView("usage"));
$("usage-range").addEventListener("submit", (event) => {
  event.preventDefault();
  showView("usage");
});

syncConstraintEditor();
loadModels().then(() => document.body.setAttribute("data-ready", "true"));
