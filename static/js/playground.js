// The playground: POST the prompt to the gateway's /v1/chat/completions with the page's
// short-lived token, stream the answer in as server-sent events arrive, then show how the
// request was served (response headers, the final usage chunk, the cost comment line).
(() => {
  "use strict";

  const root = document.getElementById("playground");
  if (!root) return;

  const $ = (id) => document.getElementById(id);
  const form = $("playground-form");
  const prompt = $("pg-prompt");
  const model = $("pg-model");
  const send = $("pg-send");
  const stop = $("pg-stop");
  const answer = $("pg-answer");
  const errorBox = $("pg-error");
  const status = $("pg-status");
  const facts = {
    provider: $("pg-provider"),
    model: $("pg-model-used"),
    cost: $("pg-cost"),
    attempts: $("pg-attempts"),
    tokens: $("pg-tokens"),
  };
  const endpoint = root.dataset.endpoint;
  const expiresAt = Date.parse(root.dataset.expiresAt || "");
  const COST_PREFIX = ": x-switchyard-cost-usd=";
  const EXPIRED = "This page's token has expired (it lasts an hour). Reload the page to get a new one.";

  let controller = null;

  function setStatus(text, kind) {
    status.textContent = text;
    status.className = "badge" + (kind ? " badge-" + kind : "");
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function resetFacts() {
    for (const el of Object.values(facts)) el.textContent = "—";
  }

  function formatCost(value) {
    const n = Number(value);
    if (!Number.isFinite(n)) return value;
    if (n === 0) return "$0";
    return "$" + n.toFixed(8).replace(/0+$/, "").replace(/\.$/, "");
  }

  // The error envelope {"error": {"message", "code", ...}} as one readable sentence.
  function describeError(status, body, headers) {
    const error = (body && body.error) || {};
    let message = error.message || `The gateway answered ${status}.`;
    if (status === 401) {
      message =
        Date.now() > expiresAt
          ? EXPIRED
          : "The gateway refused this page's token. Reload the page to get a new one.";
    } else if (status === 429) {
      const retry = headers && headers.get("retry-after");
      if (retry && !/Retry after/i.test(message)) message += ` Retry after ${retry} s.`;
    } else if (Array.isArray(error.attempts) && error.attempts.length) {
      const tried = error.attempts.map(
        (a) => `${a.provider} ${a.model}: ${a.status ?? "no response"}${a.error ? " (" + a.error + ")" : ""}`,
      );
      message += " Tried: " + tried.join("; ") + ".";
    }
    const label = { 402: "Limit reached", 403: "Not allowed", 429: "Rate limited" }[status];
    return (label ? label + ": " : "") + message;
  }

  function appendText(text) {
    if (!text) return;
    if (answer.dataset.empty === "1") {
      answer.textContent = "";
      answer.dataset.empty = "0";
    }
    answer.append(document.createTextNode(text));
  }

  function handleData(data) {
    if (data === "[DONE]") return;
    let chunk;
    try {
      chunk = JSON.parse(data);
    } catch {
      return; // not JSON: nothing to show
    }
    if (chunk.error) {
      showError(describeError(502, chunk));
      return;
    }
    for (const choice of chunk.choices || []) {
      const delta = choice.delta || {};
      appendText(delta.content || "");
    }
    if (chunk.usage) {
      const usage = chunk.usage;
      facts.tokens.textContent = `${usage.prompt_tokens ?? "?"} / ${usage.completion_tokens ?? "?"}`;
    }
    if (chunk.model && facts.model.textContent === "—") facts.model.textContent = chunk.model;
  }

  function handleLine(line) {
    if (line.startsWith("data:")) {
      handleData(line.slice(5).trimStart());
    } else if (line.startsWith(COST_PREFIX)) {
      facts.cost.textContent = formatCost(line.slice(COST_PREFIX.length).trim());
    }
  }

  async function readStream(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const lines = buffer.split(/\r?\n/);
      buffer = lines.pop();
      for (const line of lines) handleLine(line);
    }
    buffer += decoder.decode();
    if (buffer) handleLine(buffer);
  }

  async function run(event) {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text) {
      showError("Write a prompt first.");
      prompt.focus();
      return;
    }
    errorBox.hidden = true;
    resetFacts();
    answer.textContent = "";
    answer.dataset.empty = "1";
    if (Date.now() > expiresAt) {
      showError(EXPIRED);
      setStatus("Expired", "bad");
      return;
    }
    controller = new AbortController();
    send.disabled = true;
    stop.style.display = "";
    setStatus("Sending…", "info");
    const started = performance.now();
    try {
      const response = await fetch(endpoint, {
        method: "POST",
        headers: {
          Authorization: "Bearer " + root.dataset.token,
          "Content-Type": "application/json",
        },
        body: JSON.stringify({
          model: model.value,
          messages: [{ role: "user", content: text }],
          stream: true,
          stream_options: { include_usage: true },
        }),
        signal: controller.signal,
      });
      facts.provider.textContent = response.headers.get("x-switchyard-provider") || "—";
      facts.model.textContent = response.headers.get("x-switchyard-model") || "—";
      facts.attempts.textContent = response.headers.get("x-switchyard-attempts") || "—";
      if (!response.ok) {
        let body = null;
        try {
          body = await response.json();
        } catch {
          body = null;
        }
        showError(describeError(response.status, body, response.headers));
        setStatus(`Error ${response.status}`, "bad");
        return;
      }
      setStatus("Streaming…", "info");
      await readStream(response);
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      if (errorBox.hidden) setStatus(`Done in ${seconds} s`, "ok");
      else setStatus("Stopped by an error", "bad");
    } catch (err) {
      if (err.name === "AbortError") {
        setStatus("Stopped", "warn");
      } else {
        showError("The gateway could not be reached: " + err.message);
        setStatus("Error", "bad");
      }
    } finally {
      if (answer.dataset.empty === "1") answer.innerHTML = '<span class="muted">No answer.</span>';
      send.disabled = false;
      stop.style.display = "none";
      controller = null;
    }
  }

  form.addEventListener("submit", run);
  stop.addEventListener("click", () => controller && controller.abort());
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
})();
