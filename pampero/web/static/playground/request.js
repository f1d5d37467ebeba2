// Building the chat request from the form: sampling fields (with vLLM's extras), the output
// constraint and the tools, each validated where it is typed (a JSON error is shown inline).

const NUMBER_FIELDS = [
  ["max_tokens", parseInt],
  ["min_tokens", parseInt],
  ["temperature", parseFloat],
  ["top_p", parseFloat],
  ["top_k", parseInt],
  ["min_p", parseFloat],
  ["repetition_penalty", parseFloat],
  ["presence_penalty", parseFloat],
  ["frequency_penalty", parseFloat],
  ["seed", parseInt],
];

const $ = (id) => document.getElementById(id);

function parseJson(text, what) {
  try {
    return { value: JSON.parse(text) };
  } catch (error) {
    return { error: `${what}: ${error.message}` };
  }
}

// The constraint's request fields, or {error} (shown under the editor).
export function constraintFields() {
  const kind = $("constraint-kind").value;
  const text = $("constraint-text").value;
  switch (kind) {
    case "none":
      return { fields: {} };
    case "json_object":
      return { fields: { response_format: { type: "json_object" } } };
    case "json_schema": {
      if (!text.trim()) return { error: "Write a JSON schema." };
      const parsed = parseJson(text, "Invalid JSON");
      if (parsed.error) return parsed;
      if (typeof parsed.value !== "object" || parsed.value === null || Array.isArray(parsed.value)) {
        return { error: "A JSON schema is an object." };
      }
      return {
        fields: {
          response_format: {
            type: "json_schema",
            json_schema: { name: "playground", schema: parsed.value, strict: true },
          },
        },
      };
    }
    case "regex": {
      if (!text) return { error: "Write a regular expression." };
      try {
        new RegExp(text, "u");
      } catch (error) {
        return { error: `Invalid regex: ${error.message}` };
      }
      return { fields: { guided_regex: text } };
    }
    case "choice": {
      const choices = text.split("\n").map((s) => s.trim()).filter(Boolean);
      if (!choices.length) return { error: "Write one choice per line." };
      return { fields: { guided_choice: choices } };
    }
    case "grammar":
      if (!text.trim()) return { error: "Write a grammar." };
      return { fields: { guided_grammar: text } };
    default:
      return { error: `Unknown constraint ${kind}` };
  }
}

export function toolFields() {
  const text = $("tools-text").value.trim();
  if (!text) return { fields: {} };
  const parsed = parseJson(text, "Invalid JSON");
  if (parsed.error) return parsed;
  if (!Array.isArray(parsed.value)) return { error: "Tools are a JSON array." };
  for (const [i, tool] of parsed.value.entries()) {
    if (!tool || tool.type !== "function" || !tool.function || !tool.function.name) {
      return { error: `Tool ${i}: expected {"type": "function", "function": {"name": ...}}` };
    }
  }
  const fields = { tools: parsed.value };
  const choice = $("tool-choice").value;
  if (choice) fields.tool_choice = choice;
  return { fields };
}

export function samplingFields() {
  const fields = {};
  for (const [name, parse] of NUMBER_FIELDS) {
    const raw = $(name).value.trim();
    if (raw === "") continue;
    const value = parse(raw);
    if (Number.isNaN(value)) return { error: `${name}: not a number` };
    fields[name] = value;
  }
  const stop = $("stop-seq").value;
  if (stop.trim()) fields.stop = stop.split(",").map((s) => s.trim()).filter(Boolean);
  return { fields };
}

// Shows (or clears) an editor's inline error; returns whether it is valid.
export function markField(textareaId, errorId, result) {
  const message = result.error || "";
  $(errorId).textContent = message;
  $(textareaId).setAttribute("aria-invalid", message ? "true" : "false");
  return !message;
}

// The whole body for `history` (the conversation so far, user turn included).
export function buildBody({ model, history, stream, toolsEnabled, constraintsEnabled }) {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...history);
  const body = { model, messages };
  const parts = [samplingFields()];
  if (constraintsEnabled) parts.push(constraintFields());
  if (toolsEnabled) parts.push(toolFields());
  for (const part of parts) {
    if (part.error) return { error: part.error };
    Object.assign(body, part.fields);
  }
  if (stream) {
    body.stream = true;
    body.stream_options = { include_usage: true };
  }
  return { body };
}
