// "Copy as curl / Python / JavaScript": the exact request the page sent (same URL, same JSON
// body), with the key read from the PAMPERO_API_KEY environment variable rather than pasted.

function shellQuote(text) {
  return "'" + text.replace(/'/g, "'\\''") + "'";
}

// A Python literal for a JSON value (JSON string escapes are valid Python escapes).
export function pythonLiteral(value, indent = "") {
  const inner = indent + "    ";
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    const items = value.map((v) => inner + pythonLiteral(v, inner));
    return "[\n" + items.join(",\n") + ",\n" + indent + "]";
  }
  const entries = Object.entries(value);
  if (!entries.length) return "{}";
  const items = entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${pythonLiteral(v, inner)}`);
  return "{\n" + items.join(",\n") + ",\n" + indent + "}";
}

export function curl(url, body, keyed) {
  const lines = [`curl ${shellQuote(url)}`];
  if (body.stream) lines[0] = `curl -N ${shellQuote(url)}`;
  if (keyed) lines.push(`  -H "Authorization: Bearer $PAMPERO_API_KEY"`);
  lines.push(`  -H "Content-Type: application/json"`);
  lines.push(`  -d ${shellQuote(JSON.stringify(body))}`);
  return lines.join(" \\\n");
}

export function python(url, body, keyed) {
  const head = ["import json", ...(keyed ? ["import os"] : []), "", "import requests", ""];
  head.push(`url = ${JSON.stringify(url)}`);
  head.push(
    keyed
      ? 'headers = {"Authorization": "Bearer " + os.environ["PAMPERO_API_KEY"]}'
      : "headers = {}",
  );
  head.push(`body = ${pythonLiteral(body)}`, "");
  if (body.stream) {
    head.push(
      "with requests.post(url, headers=headers, json=body, stream=True) as response:",
      "    response.raise_for_status()",
      "    for line in response.iter_lines():",
      '        if line.startswith(b"data: ") and line != b"data: [DONE]":',
      '            delta = json.loads(line[6:])["choices"]',
      '            if delta and delta[0]["delta"].get("content"):',
      '                print(delta[0]["delta"]["content"], end="", flush=True)',
      "print()",
    );
  } else {
    head.push(
      "response = requests.post(url, headers=headers, json=body)",
      "response.raise_for_status()",
      "print(json.dumps(response.json(), indent=2, ensure_ascii=False))",
    );
  }
  return head.join("\n") + "\n";
}

export function javascript(url, body, keyed) {
  const headerLines = ['  "Content-Type": "application/json",'];
  if (keyed) headerLines.unshift('  "Authorization": "Bearer " + process.env.PAMPERO_API_KEY,');
  const lines = [
    `const url = ${JSON.stringify(url)};`,
    `const body = ${JSON.stringify(body, null, 2)};`,
    "const response = await fetch(url, {",
    '  method: "POST",',
    "  headers: {",
    ...headerLines.map((l) => "  " + l),
    "  },",
    "  body: JSON.stringify(body),",
    "});",
    "if (!response.ok) throw new Error(await response.text());",
  ];
  if (body.stream) {
    lines.push(
      "const decoder = new TextDecoder();",
      "for await (const bytes of response.body) process.stdout.write(decoder.decode(bytes));",
    );
  } else {
    lines.push("console.log(JSON.stringify(await response.json(), null, 2));");
  }
  // An async function, not top-level await, so that `node -e` runs it as it is.
  return "(async () => {\n" + lines.map((l) => "  " + l).join("\n") + "\n})();\n";
}

export const SNIPPETS = { curl, python, javascript };
