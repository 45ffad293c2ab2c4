// pix2chat web chat: a thin page on the JSON API; every rule lives in the server's service.
"use strict";

const $ = (id) => document.getElementById(id);
const page = {
  messages: {},
  limits: {},
  base: null, // version id the next instruction branches from (null: the latest result)
  attachment: null, // File waiting to be sent
  pending: new Map(), // version id -> { element, started }
  events: null,
  connectedOnce: false,
  statusTimer: null,
};

function say(key) {
  return page.messages[key] || key;
}

function requestId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function api(path, { method = "GET", json, body, headers = {} } = {}) {
  const init = { method, headers: { ...headers }, credentials: "same-origin" };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    return { ok: false, status: 0, data: { is_error: true, text: say("web.offline") } };
  }
  let data;
  try {
    data = await response.json();
  } catch (error) {
    data = { is_error: !response.ok, text: response.ok ? "" : say("error.generic") };
  }
  if (response.status === 401 && data.login) showLogin(data.text);
  return { ok: response.ok, status: response.status, data };
}

// ----- thread -------------------------------------------------------------------------------

function scrollDown() {
  const thread = $("thread");
  thread.scrollTop = thread.scrollHeight;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function nearBottom() {
  const thread = $("thread");
  return thread.scrollHeight - thread.scrollTop - thread.clientHeight < 120;
}

function followImages(node) {
  // Images change the height once they load: stay at the bottom if the reader was there.
  for (const img of node.querySelectorAll("img")) {
    img.addEventListener("load", () => {
      if (nearBottom() || img.closest(".msg") === $("thread").lastElementChild) scrollDown();
    });
  }
}

function addMessage(node) {
  $("thread").append(node);
  followImages(node);
  scrollDown();
  return node;
}

function userMessage(text, imageUrl) {
  const node = element("div", "msg me");
  if (imageUrl) {
    const img = element("img", "sent");
    img.src = imageUrl;
    img.alt = say("web.your_photo");
    node.append(img);
  }
  if (text) node.append(element("p", "", text));
  return addMessage(node);
}

function errorMessage(text) {
  const node = element("div", "msg error");
  node.setAttribute("role", "alert");
  node.append(element("p", "", text));
  return addMessage(node);
}

function textMessage(text) {
  const node = element("div", "msg bot");
  node.append(element("p", "", text));
  return addMessage(node);
}

function actionButtons(actions, versionId, fullUrl) {
  const bar = element("div", "actions");
  for (const action of actions) {
    if (action === "full") {
      if (!fullUrl) continue;
      const link = element("a", "", say("button.full"));
      link.href = fullUrl;
      link.download = `pix2chat-${versionId}.png`;
      link.dataset.action = "full";
      bar.append(link);
      continue;
    }
    const button = element("button", "", say(`button.${action}`));
    button.type = "button";
    button.dataset.action = action;
    button.addEventListener("click", () => act(action, versionId));
    bar.append(button);
  }
  return bar;
}

function resultMessage(reply) {
  const node = element("div", reply.is_error ? "msg bot error" : "msg bot");
  node.dataset.version = reply.version_id ?? "";
  if (reply.image && reply.kind === "region") {
    const img = element("img", "result region");
    img.src = reply.image;
    img.alt = reply.text;
    node.append(img);
  } else if (reply.image) {
    const img = element("img", "result");
    img.src = reply.image;
    img.alt = reply.text;
    img.title = say("page.branch_hint");
    img.tabIndex = 0;
    img.addEventListener("click", () => chooseBase(reply.version_id, reply.image, node));
    img.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        chooseBase(reply.version_id, reply.image, node);
      }
    });
    node.append(img);
  }
  if (reply.kind === "variations" && reply.candidates) {
    node.append(candidateGrid(reply.candidates));
    node.append(element("p", "caption", reply.text));
    return node;
  }
  node.append(element("p", "caption", reply.text));
  if (reply.actions && reply.actions.length) {
    node.append(actionButtons(reply.actions, reply.version_id, reply.full));
  }
  if (reply.is_error) node.setAttribute("role", "alert");
  return node;
}

function candidateGrid(candidates) {
  // A set of variations: a 2x2 grid, each picture with its own "Use n" button.
  const grid = element("div", "grid");
  for (const candidate of candidates) {
    const cell = element("figure", "candidate");
    const img = element("img", "result");
    img.src = candidate.image;
    img.alt = candidate.caption;
    cell.append(img);
    cell.append(element("figcaption", "", candidate.caption));
    const use = element("button", "", candidate.use);
    use.type = "button";
    use.dataset.action = "use";
    use.dataset.version = candidate.version_id;
    use.addEventListener("click", () => act("use", candidate.version_id));
    cell.append(use);
    grid.append(cell);
  }
  followImages(grid);
  return grid;
}

function pendingMessage(versionId, text) {
  const node = element("div", "msg bot pending");
  node.dataset.version = versionId;
  node.setAttribute("aria-busy", "true");
  node.append(element("p", "status", text));
  const bar = element("progress");
  bar.removeAttribute("value"); // indeterminate until the first step
  bar.setAttribute("aria-label", text);
  node.append(bar);
  node.append(actionButtons(["cancel"], versionId));
  page.pending.set(versionId, { element: node, started: false });
  addMessage(node);
  watchQueue();
  return node;
}

function settle(versionId, reply) {
  const entry = page.pending.get(versionId);
  const node = resultMessage(reply);
  if (entry) {
    entry.element.replaceWith(node);
    followImages(node);
    page.pending.delete(versionId);
  } else if (!document.querySelector(`.msg.bot[data-version="${versionId}"]:not(.pending)`)) {
    addMessage(node);
  }
  scrollDown();
}

function showReply(reply) {
  if (reply.login) return;
  if (reply.kind === "queued" && reply.version_id) {
    if (!page.pending.has(reply.version_id)) pendingMessage(reply.version_id, reply.text);
  } else if (reply.image) {
    addMessage(resultMessage(reply));
  } else if (reply.is_error) {
    errorMessage(reply.text);
  } else if (reply.text) {
    textMessage(reply.text);
  }
}

function renderThread(history) {
  $("thread").replaceChildren();
  page.pending.clear();
  // Other candidates of a set are siblings (in /history), not steps of the thread.
  const entries = (history.history || []).filter((entry) => !entry.candidate);
  if (!entries.length) {
    textMessage(say("web.welcome"));
    return;
  }
  for (const entry of entries) {
    if (entry.instruction === null) {
      userMessage(say("web.your_photo"), entry.image);
      continue;
    }
    userMessage(entry.instruction);
    if (entry.status === "done") {
      addMessage(
        resultMessage({
          version_id: entry.version_id,
          text: entry.caption,
          image: entry.image,
          full: entry.image.replace(/\/image$/, "/full"),
          actions: ["undo", "regenerate", "full", "variations", "stronger", "subtler"],
        }),
      );
    } else {
      pendingMessage(entry.version_id, entry.text);
    }
  }
}

// ----- history strip ------------------------------------------------------------------------

function renderStrip(history) {
  const strip = $("strip");
  strip.replaceChildren();
  const done = (history.history || []).filter(
    (entry) => entry.status === "done" && !entry.candidate,
  );
  strip.hidden = done.length === 0;
  done.forEach((entry, index) => {
    if (index > 0) strip.append(element("span", "arrow", "›"));
    const button = element("button");
    button.type = "button";
    button.dataset.version = entry.version_id;
    button.title = entry.text;
    if (entry.is_head) button.setAttribute("aria-current", "true");
    const img = element("img");
    img.src = entry.thumbnail;
    img.alt = entry.text;
    button.append(img);
    button.addEventListener("click", () => chooseBase(entry.version_id, entry.thumbnail));
    strip.append(button);
  });
  strip.scrollLeft = strip.scrollWidth;
}

async function refreshStrip() {
  const { ok, data } = await api("/api/history");
  if (ok) renderStrip(data);
}

// ----- branching ----------------------------------------------------------------------------

function chooseBase(versionId, imageUrl, node) {
  document.querySelectorAll(".msg.selected").forEach((n) => n.classList.remove("selected"));
  page.base = versionId;
  const chip = $("branch");
  chip.querySelector("img").src = imageUrl;
  $("branch-text").textContent = say("web.branch");
  chip.hidden = false;
  if (node) node.classList.add("selected");
  $("text").focus();
}

function clearBase() {
  page.base = null;
  $("branch").hidden = true;
  document.querySelectorAll(".msg.selected").forEach((n) => n.classList.remove("selected"));
}

// ----- sending ------------------------------------------------------------------------------

function attach(file) {
  if (!file) return;
  if (page.limits.max_upload_bytes && file.size > page.limits.max_upload_bytes) {
    errorMessage(page.limits.too_large);
    return;
  }
  page.attachment = file;
  const chip = $("attachment");
  const img = chip.querySelector("img");
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(file);
  $("attachment-name").textContent = file.name || say("web.your_photo");
  chip.hidden = false;
  $("text").focus();
}

function detach() {
  page.attachment = null;
  $("attachment").hidden = true;
  $("file").value = "";
}

async function send(event) {
  event.preventDefault();
  const text = $("text").value.trim();
  const file = page.attachment;
  if (!file && !text) return;
  const sendButton = $("send");
  sendButton.disabled = true;
  try {
    let result;
    if (file) {
      userMessage(text, URL.createObjectURL(file));
      detach();
      clearBase();
      result = await api("/api/photo", {
        method: "POST",
        body: file,
        headers: {
          "Content-Type": file.type || "application/octet-stream",
          "X-Caption": encodeURIComponent(text),
          "X-Request-Id": requestId(),
        },
      });
    } else if (REGION_COMMAND.test(text)) {
      const [, typed, words] = text.match(REGION_COMMAND);
      const command = typed.toLowerCase();
      result = await region(command === "regions" ? null : command, words.trim());
      $("text").value = "";
      autosize();
      return;
    } else {
      const sent = userMessage(text);
      if (page.base) sent.append(element("p", "hint", say("web.branched")));
      result = await api("/api/instruct", {
        method: "POST",
        json: { text, base_version_id: page.base, request_id: requestId() },
      });
      if (result.ok) clearBase();
      if (result.ok && result.data.reload) {
        location.reload(); // a new language: the page itself is worded (and laid out) in it
        return;
      }
    }
    $("text").value = "";
    autosize();
    showReply(result.data);
    await refreshStrip();
  } finally {
    sendButton.disabled = false;
  }
}

const REGION_COMMAND = /^\/(keep|only|regions)\b\s*(.*)$/is;

async function region(kind, text) {
  // /keep <what>, /only <what> ("off" clears), or the list when kind is null.
  userMessage(kind ? `/${kind} ${text}`.trim() : "/regions");
  const result = kind
    ? await api("/api/regions", { method: "POST", json: { kind, text } })
    : await api("/api/regions");
  showReply(result.data);
  return result;
}

async function regionFromInput(kind) {
  const result = await region(kind, $("text").value.trim());
  if (result.ok) {
    $("text").value = "";
    autosize();
  }
}

async function act(action, versionId) {
  const paths = {
    undo: ["/api/undo", { version_id: versionId }],
    redo: ["/api/redo", {}],
    regenerate: ["/api/regenerate", { version_id: versionId }],
    upscale: ["/api/upscale", { version_id: versionId }],
    cancel: ["/api/cancel", {}],
    variations: ["/api/variations", { version_id: versionId }],
    stronger: ["/api/stronger", { version_id: versionId }],
    subtler: ["/api/subtler", { version_id: versionId }],
    use: ["/api/pick", { version_id: versionId }],
  };
  const [path, json] = paths[action];
  const { data } = await api(path, { method: "POST", json });
  showReply(data);
  if (action === "cancel") await syncPending();
  await refreshStrip();
}

async function syncPending() {
  const { ok, data } = await api("/api/history");
  if (!ok) return;
  const stillPending = new Set(
    (data.history || []).filter((e) => e.status !== "done").map((e) => e.version_id),
  );
  for (const [versionId, entry] of page.pending) {
    if (!stillPending.has(versionId)) {
      entry.element.remove();
      page.pending.delete(versionId);
    }
  }
}

// ----- progress -----------------------------------------------------------------------------

function onProgress(reply) {
  let entry = page.pending.get(reply.version_id);
  if (!entry) {
    pendingMessage(reply.version_id, reply.text);
    entry = page.pending.get(reply.version_id);
  }
  entry.started = true;
  entry.element.querySelector(".status").textContent = reply.text;
  const bar = entry.element.querySelector("progress");
  bar.max = reply.args.total;
  bar.value = reply.args.step;
  const cancel = entry.element.querySelector('[data-action="cancel"]');
  if (cancel) cancel.remove(); // running edits cannot be cancelled
}

function onPreview(reply) {
  // A rough picture of the running edit, above its progress bar, until the result replaces it.
  let entry = page.pending.get(reply.version_id);
  if (!entry) {
    pendingMessage(reply.version_id, reply.text);
    entry = page.pending.get(reply.version_id);
  }
  entry.started = true;
  let img = entry.element.querySelector("img.preview");
  if (!img) {
    img = element("img", "preview");
    img.alt = reply.text;
    entry.element.querySelector("progress").before(img);
    followImages(entry.element);
  }
  img.src = reply.preview;
}

function watchQueue() {
  // Until an edit starts, its place in line is all there is to show: ask now and then.
  if (page.statusTimer) return;
  page.statusTimer = setInterval(async () => {
    const waiting = [...page.pending.values()].filter((entry) => !entry.started);
    if (!waiting.length) {
      clearInterval(page.statusTimer);
      page.statusTimer = null;
      return;
    }
    const { ok, data } = await api("/api/status");
    if (ok && data.kind === "queued") {
      for (const entry of waiting) entry.element.querySelector(".status").textContent = data.text;
    }
  }, 3000);
}

function connect() {
  if (page.events) page.events.close();
  const events = new EventSource("/api/events");
  page.events = events;
  events.addEventListener("ready", async () => {
    $("connection").textContent = "";
    if (page.connectedOnce) await load(); // catch up on what finished while away
    page.connectedOnce = true;
  });
  events.addEventListener("progress", (event) => onProgress(JSON.parse(event.data)));
  events.addEventListener("preview", (event) => onPreview(JSON.parse(event.data)));
  const finished = async (event) => {
    const reply = JSON.parse(event.data);
    settle(reply.version_id, reply);
    await refreshStrip();
  };
  events.addEventListener("result", finished);
  events.addEventListener("failure", finished);
  events.addEventListener("notice", (event) => showReply(JSON.parse(event.data)));
  // Recipe batches (recipes.js): one status line, then a grid of results.
  events.addEventListener("batch", (event) => window.pix2chatBatch?.(JSON.parse(event.data)));
  events.addEventListener("error", () => {
    $("connection").textContent = say("web.reconnecting");
  });
}

// ----- settings -----------------------------------------------------------------------------

function showSettings(values) {
  const form = $("settings-form");
  for (const input of form.querySelectorAll("[data-field]")) {
    const value = values[input.dataset.field];
    if (value !== undefined) input.value = value;
  }
  for (const radio of form.querySelectorAll('[name="seed_mode"]')) {
    radio.checked = radio.value === values.seed_mode;
  }
  form.elements.seed.disabled = values.seed_mode !== "fixed";
}

function settingsMessage(text, isError) {
  const message = $("settings-message");
  message.textContent = text;
  message.classList.toggle("error", Boolean(isError));
  message.setAttribute("role", isError ? "alert" : "status");
}

async function changeSetting(name, value) {
  const { ok, data } = await api("/api/settings", { method: "POST", json: { name, value } });
  settingsMessage(data.text, !ok);
  if (ok) {
    showSettings(data.settings);
  } else {
    const current = await api("/api/settings");
    if (current.ok) showSettings(current.data.settings);
  }
}

function openSettings(open) {
  $("settings").hidden = !open;
  $("settings-button").setAttribute("aria-expanded", String(open));
  if (open) $("settings-form").querySelector("input, select").focus();
  else $("settings-button").focus();
}

// ----- start-up -----------------------------------------------------------------------------

function showLogin(text) {
  $("composer").hidden = true;
  $("login").hidden = false;
  $("login-message").textContent = text || "";
  $("password").focus();
}

async function load() {
  const { ok, data } = await api("/api/state");
  if (!ok) {
    if (!data.login) errorMessage(data.text);
    return;
  }
  page.messages = data.messages;
  page.limits = data.limits;
  const select = $("settings-form").elements.resolution;
  select.replaceChildren(
    ...data.choices.resolutions.map((r) => {
      const option = element("option", "", `${r}`);
      option.value = r;
      return option;
    }),
  );
  renderThread(data.history);
  renderStrip(data.history);
  showSettings(data.settings.settings);
}

async function start() {
  const { ok, data } = await api("/api/session", { method: "POST" });
  if (!ok) {
    if (!data.login) errorMessage(data.text);
    return;
  }
  $("login").hidden = true;
  $("composer").hidden = false;
  await load();
  connect();
  $("text").focus();
}

function autosize() {
  const text = $("text");
  text.style.height = "auto";
  text.style.height = `${Math.min(text.scrollHeight + 2, 144)}px`;
}

function wire() {
  $("composer").addEventListener("submit", send);
  $("text").addEventListener("input", autosize);
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("file").addEventListener("change", () => attach($("file").files[0]));
  $("region-keep").addEventListener("click", () => regionFromInput("keep"));
  $("region-only").addEventListener("click", () => regionFromInput("only"));
  $("region-show").addEventListener("click", () => region(null, ""));
  $("region-keep-off").addEventListener("click", () => region("keep", "off"));
  $("region-only-off").addEventListener("click", () => region("only", "off"));
  $("attachment-remove").addEventListener("click", detach);
  $("branch-clear").addEventListener("click", clearBase);
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) {
      event.preventDefault();
      attach(file);
    }
  });
  let dragDepth = 0;
  document.addEventListener("dragenter", (event) => {
    if ([...event.dataTransfer.types].includes("Files")) {
      dragDepth += 1;
      $("drop").hidden = false;
    }
  });
  document.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) $("drop").hidden = true;
  });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    dragDepth = 0;
    $("drop").hidden = true;
    attach(event.dataTransfer.files[0]);
  });

  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const { ok, data } = await api("/api/login", {
      method: "POST",
      json: { password: $("password").value },
    });
    $("password").value = "";
    if (ok) await start();
    else $("login-message").textContent = data.text;
  });

  const form = $("settings-form");
  $("settings-button").addEventListener("click", () => openSettings($("settings").hidden));
  $("settings-close").addEventListener("click", () => openSettings(false));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("settings").hidden) openSettings(false);
  });
  for (const input of form.querySelectorAll("[data-field]")) {
    input.addEventListener("change", () => changeSetting(input.name, input.value));
  }
  for (const radio of form.querySelectorAll('[name="seed_mode"]')) {
    radio.addEventListener("change", () => changeSetting("seed_mode", radio.value));
  }
  $("settings-reset").addEventListener("click", async () => {
    const { ok, data } = await api("/api/settings/reset", { method: "POST" });
    settingsMessage(data.text, !ok);
    if (ok) showSettings(data.settings);
  });
  $("forget").addEventListener("click", async () => {
    if (!window.confirm(say("forget.confirm"))) return;
    const { data } = await api("/api/forget", { method: "POST" });
    openSettings(false);
    clearBase();
    await load();
    showReply(data);
  });
}

wire();
start();
