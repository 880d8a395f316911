// The live dashboard: follows GET /events/stream with EventSource.
//
// Messages are parsed as they arrive but rendered in batches, once per
// animation frame, and the table keeps at most MAX_ROWS rows, so the page
// stays responsive at thousands of events per second. EventSource reconnects
// by itself and sends Last-Event-ID, so the server resumes without loss.
// When the page reconnects on its own (a filter change, or after the server
// rejected a connection), it passes the last received sequence as `after`.
"use strict";

const MAX_ROWS = 500;
const CHART_SECONDS = 300;
// Sequences before the head to show when the page opens.
const BACKFILL_EVENTS = 100;
const HEAD_POLL_MILLISECONDS = 2000;
const MAX_RETRY_MILLISECONDS = 30000;
const TOKEN_KEY = "eventlog.accessToken";
const FILTER_NAMES = ["type", "source", "subject"];

const form = document.getElementById("filters");
const tbody = document.querySelector("#events tbody");
const chart = document.getElementById("chart");
const detail = document.getElementById("detail");

const state = {
  source: null,
  filterKey: "",
  // The last sequence received: where a reconnect made by this page resumes.
  cursor: null,
  head: 0,
  paused: false,
  arrivedWhilePaused: 0,
  // Parsed events that are not rendered yet, oldest first.
  pending: [],
  frameRequested: false,
  // Events received per second, keyed by the second since the epoch.
  counts: new Map(),
  retryMilliseconds: 1000,
  retryTimer: null,
};

// Events of rendered rows, for the detail view.
const rowEvents = new WeakMap();

function streamUrl(after) {
  const parameters = filterParameters();
  if (after !== null) {
    parameters.set("after", String(after));
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) {
    // NOTE: the server does not check tokens yet; the parameter is sent so
    // that the dashboard keeps working once it does.
    parameters.set("access_token", token);
  }
  return "/events/stream?" + parameters.toString();
}

function filterParameters() {
  const parameters = new URLSearchParams();
  for (const name of FILTER_NAMES) {
    const value = form.elements[name].value.trim();
    if (value) {
      parameters.append(name, value);
    }
  }
  return parameters;
}

function connect(after) {
  disconnect();
  state.filterKey = filterParameters().toString();
  const url = streamUrl(after);
  const source = new EventSource(url);
  state.source = source;
  setConnection("connecting");

  source.onopen = () => {
    state.retryMilliseconds = 1000;
    setConnection("live");
    showError("");
  };
  source.onmessage = receive;
  source.onerror = () => {
    if (state.source !== source) {
      return;
    }
    if (source.readyState === EventSource.CONNECTING) {
      // EventSource retries by itself and sends Last-Event-ID.
      setConnection("reconnecting");
      return;
    }
    // EventSource gives up after an error response; find out why, then retry.
    source.close();
    state.source = null;
    setConnection("failed");
    explainFailure(url).finally(scheduleRetry);
  };
}

function disconnect() {
  clearTimeout(state.retryTimer);
  state.retryTimer = null;
  if (state.source !== null) {
    state.source.close();
    state.source = null;
  }
}

function scheduleRetry() {
  const delay = state.retryMilliseconds;
  state.retryMilliseconds = Math.min(2 * delay, MAX_RETRY_MILLISECONDS);
  setConnection("reconnecting");
  state.retryTimer = setTimeout(() => connect(state.cursor), delay);
}

// Repeat the failed request with fetch, which shows the problem response
// that EventSource hides.
async function explainFailure(url) {
  const controller = new AbortController();
  try {
    const response = await fetch(url, { signal: controller.signal });
    if (response.ok) {
      return;
    }
    const problem = await response.json().catch(() => ({}));
    if (response.status === 410 && Number.isInteger(problem.earliest)) {
      // Retention removed events after the cursor: continue from the earliest.
      state.cursor = problem.earliest - 1;
    }
    showError(`${response.status} ${problem.title || response.statusText}: ${problem.detail || ""}`);
  } catch (error) {
    showError(`The server cannot be reached: ${error.message}`);
  } finally {
    controller.abort();
  }
}

function receive(message) {
  let event;
  try {
    event = JSON.parse(message.data);
  } catch {
    return;
  }
  const sequence = Number(message.lastEventId);
  state.cursor = sequence;
  state.head = Math.max(state.head, sequence);
  const second = Math.floor(Date.now() / 1000);
  state.counts.set(second, (state.counts.get(second) || 0) + 1);

  if (state.paused) {
    state.arrivedWhilePaused += 1;
  }
  state.pending.push(event);
  // Only the newest MAX_ROWS can be shown, so drop older ones in bulk.
  if (state.pending.length > 2 * MAX_ROWS) {
    state.pending.splice(0, state.pending.length - MAX_ROWS);
  }
  requestRender();
}

function requestRender() {
  if (!state.frameRequested) {
    state.frameRequested = true;
    requestAnimationFrame(render);
  }
}

function render() {
  state.frameRequested = false;
  showStatus();
  if (state.paused) {
    return;
  }
  const batch = state.pending.splice(0).slice(-MAX_ROWS);
  const fragment = document.createDocumentFragment();
  for (let index = batch.length - 1; index >= 0; index -= 1) {
    fragment.appendChild(tableRow(batch[index]));
  }
  tbody.insertBefore(fragment, tbody.firstChild);
  while (tbody.rows.length > MAX_ROWS) {
    tbody.deleteRow(-1);
  }
}

function tableRow(event) {
  const row = document.createElement("tr");
  row.dataset.sequence = event.sequence;
  for (const value of [event.sequence, event.recordedtime, event.type, event.source, event.subject]) {
    const cell = document.createElement("td");
    cell.textContent = value === undefined ? "" : String(value);
    cell.title = cell.textContent;
    row.appendChild(cell);
  }
  rowEvents.set(row, event);
  return row;
}

function showStatus() {
  document.getElementById("head").textContent = state.head ? String(state.head) : "–";
  document.getElementById("cursor").textContent = state.cursor === null ? "–" : String(state.cursor);
  const note = document.getElementById("paused-note");
  note.hidden = !state.paused;
  note.textContent = state.paused ? `(paused, ${state.arrivedWhilePaused} new)` : "";
}

function setConnection(name) {
  const element = document.getElementById("state");
  element.dataset.state = name;
  element.textContent = name;
}

function showError(text) {
  const element = document.getElementById("error");
  element.textContent = text;
  element.hidden = text === "";
}

function drawChart() {
  const ratio = window.devicePixelRatio || 1;
  const width = chart.clientWidth;
  const height = chart.clientHeight;
  if (chart.width !== Math.round(width * ratio) || chart.height !== Math.round(height * ratio)) {
    chart.width = Math.round(width * ratio);
    chart.height = Math.round(height * ratio);
  }
  const context = chart.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.clearRect(0, 0, width, height);

  // The current second is still counting, so the chart ends at the last full one.
  const last = Math.floor(Date.now() / 1000) - 1;
  const values = [];
  for (let second = last - CHART_SECONDS + 1; second <= last; second += 1) {
    values.push(state.counts.get(second) || 0);
  }
  for (const second of state.counts.keys()) {
    if (second < last - CHART_SECONDS) {
      state.counts.delete(second);
    }
  }
  document.getElementById("rate").textContent = String(values[values.length - 1]);

  const top = 14;
  const maximum = Math.max(1, ...values);
  const barWidth = width / CHART_SECONDS;
  context.fillStyle = "#1f6feb";
  values.forEach((value, index) => {
    const barHeight = ((height - top) * value) / maximum;
    context.fillRect(index * barWidth, height - barHeight, Math.max(barWidth - 0.5, 0.5), barHeight);
  });
  context.fillStyle = "#5f6b76";
  context.font = "11px system-ui, sans-serif";
  context.textAlign = "left";
  context.fillText(`${maximum}/s`, 4, 11);
  context.textAlign = "right";
  context.fillText("now", width - 4, 11);
}

async function pollHead() {
  try {
    const response = await fetch("/health", { cache: "no-store" });
    const body = await response.json();
    if (Number.isInteger(body.head)) {
      state.head = Math.max(state.head, body.head);
      showStatus();
    }
    return body.head;
  } catch {
    return null;
  }
}

function applyFilters() {
  if (filterParameters().toString() === state.filterKey) {
    return;
  }
  // Rows of the old filter would mislead, so the table starts over.
  tbody.replaceChildren();
  state.pending = [];
  state.arrivedWhilePaused = 0;
  connect(state.cursor);
}

function togglePause() {
  state.paused = !state.paused;
  state.arrivedWhilePaused = 0;
  const button = document.getElementById("pause");
  button.textContent = state.paused ? "Resume" : "Pause";
  button.setAttribute("aria-pressed", String(state.paused));
  requestRender();
}

function saveToken() {
  const token = form.elements.token.value.trim();
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  } else {
    sessionStorage.removeItem(TOKEN_KEY);
  }
  connect(state.cursor);
}

async function start() {
  form.elements.token.value = sessionStorage.getItem(TOKEN_KEY) || "";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    applyFilters();
  });
  for (const name of FILTER_NAMES) {
    form.elements[name].addEventListener("change", applyFilters);
  }
  form.elements.token.addEventListener("change", saveToken);
  document.getElementById("pause").addEventListener("click", togglePause);
  tbody.addEventListener("click", (event) => {
    const row = event.target.closest("tr");
    if (row && rowEvents.has(row)) {
      document.getElementById("detail-json").textContent = JSON.stringify(rowEvents.get(row), null, 2);
      detail.showModal();
    }
  });

  setInterval(drawChart, 1000);
  setInterval(pollHead, HEAD_POLL_MILLISECONDS);
  window.addEventListener("resize", drawChart);
  drawChart();

  const head = await pollHead();
  state.cursor = Number.isInteger(head) ? Math.max(0, head - BACKFILL_EVENTS) : null;
  connect(state.cursor);
}

start();
