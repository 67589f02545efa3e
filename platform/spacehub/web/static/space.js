// A space's pages: one live stream (stage + build log + run log), in-place tabs, lazy "Use via API".
(function () {
  "use strict";
  const body = document.body;
  if (!body.hasAttribute("data-space-page")) return;
  const base = body.dataset.base;
  const MAX_LINES = 5000;
  const FRAME_ALLOW = "accelerometer; autoplay; camera; clipboard-read; clipboard-write; display-capture; " +
    "encrypted-media; fullscreen; geolocation; gyroscope; microphone; midi; payment; picture-in-picture; web-share";
  const FRAME_SANDBOX = "allow-forms allow-modals allow-popups allow-popups-to-escape-sandbox allow-same-origin " +
    "allow-scripts allow-downloads allow-storage-access-by-user-activation";
  let stage = body.dataset.stage;
  let group = body.dataset.group || "";
  let message = body.dataset.message || "";
  let runningSha = body.dataset.sha || "";
  let buildLines = 0;

  // Tabs: App, Logs and API switch in place, so the page keeps its one stream.
  function showTab(name, push) {
    const target = document.querySelector('[data-panel="' + name + '"]');
    if (!target) return false;
    document.querySelectorAll("[data-panel]").forEach(function (panel) { panel.hidden = panel !== target; });
    document.querySelectorAll(".tabs a").forEach(function (a) {
      a.classList.toggle("active", a.dataset.tab === name);
    });
    if (push) history.pushState({ tab: name }, "", name === "app" ? base : base + "/" + name);
    if (name === "api") loadApi(false);
    if (name === "logs") target.querySelectorAll(".log").forEach(function (pre) { pre.scrollTop = pre.scrollHeight; });
    return true;
  }
  document.addEventListener("click", function (event) {
    const link = event.target.closest("a[data-tab], a[data-tab-link]");
    if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    if (showTab(link.dataset.tab || link.dataset.tabLink, true)) event.preventDefault();
  });
  window.addEventListener("popstate", function () {
    const rest = location.pathname.slice(base.length).replace(/^\//, "");
    showTab(rest || "app", false);
  });

  // Build / App switch inside the logs tab.
  document.querySelectorAll("[data-logtab]").forEach(function (button) {
    button.addEventListener("click", function () {
      document.querySelectorAll("[data-logtab]").forEach(function (b) { b.classList.toggle("active", b === button); });
      document.querySelectorAll("[data-logpane]").forEach(function (pane) {
        pane.hidden = pane.dataset.logpane !== button.dataset.logtab;
        if (!pane.hidden) pane.scrollTop = pane.scrollHeight;
      });
    });
  });

  // "Use via API": fetched when first shown (the server asks the app for its endpoints).
  let apiLoaded = false;
  function loadApi(force) {
    const holder = document.querySelector('[data-panel="api"] [data-src]');
    if (!holder || (apiLoaded && !force)) return;
    apiLoaded = true;
    fetch(holder.dataset.src, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (html) { holder.innerHTML = html; })
      .catch(function () { apiLoaded = false; holder.innerHTML = '<p class="muted">Could not load the endpoints.</p>'; });
  }
  const apiPanel = document.querySelector('[data-panel="api"]');
  if (apiPanel && !apiPanel.hidden) loadApi(false);

  // Logs
  function classify(line) {
    if (line.startsWith("==>")) return "step";
    if (/\b(error|failed|traceback|exception)\b/i.test(line)) return "err";
    return "";
  }
  function appendLines(kind, lines) {
    if (kind === "build") {
      // A new build starts a fresh log.
      let start = -1;
      lines.forEach(function (line, i) { if (line.startsWith("==> Building ")) start = i; });
      if (start >= 0) {
        document.querySelectorAll('[data-log="build"]').forEach(function (pre) { pre.textContent = ""; });
        buildLines = 0;
        lines = lines.slice(start);
      }
      buildLines += lines.length;
    }
    document.querySelectorAll('[data-log="' + kind + '"]').forEach(function (pre) {
      const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 48;
      const fragment = document.createDocumentFragment();
      lines.forEach(function (line) {
        const span = document.createElement("span");
        span.textContent = line + "\n";
        const tone = classify(line);
        if (tone) span.className = tone;
        fragment.appendChild(span);
      });
      pre.appendChild(fragment);
      while (pre.childNodes.length > MAX_LINES) pre.removeChild(pre.firstChild);
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    });
    if (kind === "build" && lines.length) {
      advanceFromQueued();
      const latest = document.querySelector("[data-latest-line]");
      if (latest) latest.textContent = lines[lines.length - 1];
      const count = document.querySelector("[data-line-count]");
      if (count) count.textContent = buildLines + " log line" + (buildLines === 1 ? "" : "s");
    }
  }

  // A worker took the build: its log says so before the next stage poll does.
  function advanceFromQueued() {
    const steps = document.querySelectorAll("[data-progress] .steps li");
    if (steps.length < 2 || !steps[0].classList.contains("current")) return;
    steps[0].className = "done";
    steps[1].className = "current";
    const title = document.querySelector("[data-progress-title]");
    if (title) title.textContent = "Building the space";
  }

  // Stage
  function refreshStatus() {
    const panel = document.getElementById("status-panel");
    if (!panel) return;
    fetch(base + "/status", { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (html) {
        panel.innerHTML = html;
        if (window.spacehub.bindUploadForms) window.spacehub.bindUploadForms(panel);
        const latest = panel.querySelector("[data-latest-line]");
        const last = document.querySelector('#build-live [data-log="build"] span:last-child');
        if (latest && last) latest.textContent = last.textContent.trim();
        if (last && stage === "BUILDING") advanceFromQueued();
      })
      .catch(function () {});
  }
  function ensureFrame(url) {
    const holder = document.getElementById("app-frame");
    if (!holder) return;
    const existing = holder.querySelector("iframe");
    if (group === "app") {
      if (existing || !url) return;
      const frame = document.createElement("iframe");
      frame.src = url;
      frame.title = document.title;
      frame.setAttribute("allow", FRAME_ALLOW);
      frame.setAttribute("sandbox", FRAME_SANDBOX);
      frame.setAttribute("data-app-frame", "");
      holder.appendChild(frame);
    } else if (existing) {
      existing.remove();
    }
  }
  function onStage(next) {
    document.querySelectorAll("[data-stage-badge]").forEach(function (badge) {
      badge.textContent = next.label;
      badge.className = "badge badge-" + next.tone;
    });
    const previous = stage;
    const changed = next.stage !== stage || next.message !== message;
    const groupChanged = next.group !== group;
    stage = next.stage;
    message = next.message;
    group = next.group;
    body.dataset.stage = stage;
    body.dataset.group = group;
    const live = document.getElementById("build-live");
    if (live) live.hidden = group !== "building";
    document.querySelectorAll("[data-open-app]").forEach(function (link) { link.hidden = group !== "app"; });
    ensureFrame(next.app_url);
    const restarted = previous === "RUNNING_APP_STARTING" && stage === "RUNNING";
    if (next.app_url && (restarted || (next.sha && runningSha && next.sha !== runningSha))) {
      // A new revision or a restarted app took over: show its page, not the old process's.
      const frame = document.querySelector("#app-frame iframe");
      if (frame) frame.src = next.app_url;
    }
    if (next.sha) runningSha = next.sha;
    if (changed) refreshStatus();
    if (groupChanged && apiLoaded) loadApi(true);
  }

  const status = document.querySelector("[data-log-status]");
  const events = new EventSource(body.dataset.events);
  events.addEventListener("stage", function (event) { onStage(JSON.parse(event.data)); });
  events.addEventListener("build", function (event) { appendLines("build", JSON.parse(event.data).lines); });
  events.addEventListener("run", function (event) { appendLines("run", JSON.parse(event.data).lines); });
  events.addEventListener("gone", function () { events.close(); location.reload(); });
  events.addEventListener("open", function () { if (status) status.textContent = "● Live"; });
  events.addEventListener("error", function () { if (status) status.textContent = "Reconnecting…"; });

  // Settings: the delete button wakes up only once the space's full name is typed.
  const confirmInput = document.querySelector("[data-expect]");
  const deleteButton = document.querySelector("[data-delete-button]");
  if (confirmInput && deleteButton) {
    confirmInput.addEventListener("input", function () {
      deleteButton.disabled = confirmInput.value.trim() !== confirmInput.dataset.expect;
    });
  }
  // Deleting: the stream's "gone" (sent as soon as the delete commits) must not reload this page over the
  // delete's own answer, the owner's page.
  const deleteForm = document.querySelector("[data-delete-form]");
  if (deleteForm) deleteForm.addEventListener("submit", function () { events.close(); });
})();
