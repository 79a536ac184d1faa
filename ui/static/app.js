// Shipyard UI: keeps the run list and a run's page live over server-sent events.
// The page is rendered complete by the server; this only applies what changes after.
"use strict";

const BADGES = JSON.parse(document.body.dataset.badges || "{}");

function badgeHtml(state) {
  const [icon, label] = BADGES[state] || ["?", state];
  const span = document.createElement("span");
  span.className = `badge s-${state}`;
  span.dataset.stateBadge = "";
  span.innerHTML = `<span aria-hidden="true">${icon}</span> `;
  span.append(label);
  return span;
}

function setBadge(container, state) {
  if (!container) return;
  const old = container.querySelector("[data-state-badge]");
  const fresh = badgeHtml(state);
  if (old) old.replaceWith(fresh); else container.prepend(fresh);
}

function listen(url, since, handlers) {
  const status = document.querySelector("[data-live-status]");
  const source = new EventSource(since ? `${url}${url.includes("?") ? "&" : "?"}since=${since}` : url);
  const seen = { change: 0, log: 0 };
  source.onopen = () => { if (status) { status.textContent = "Live"; status.classList.remove("off"); } };
  source.onerror = () => {
    if (!status) return;
    status.classList.add("off");
    // A refusal (429: this user has too many streams open) closes the source for good;
    // anything else is retried by the browser.
    status.textContent = source.readyState === EventSource.CLOSED
      ? "Live updates stopped: close other Shipyard tabs, then reload" : "Reconnecting…";
  };
  for (const [event, handle] of Object.entries(handlers)) {
    source.addEventListener(event, (message) => {
      const data = JSON.parse(message.data);
      const kind = event === "log" ? "log" : "change";
      if (data.id !== undefined) {
        if (data.id <= seen[kind]) return;  // replayed and live can overlap
        seen[kind] = data.id;
      }
      handle(data);
    });
  }
  source.addEventListener("resync", () => { source.close(); location.reload(); });
  // The session ended (signed out here or elsewhere, a new password, disabled): the
  // reload shows the sign-in page.
  source.addEventListener("ended", () => { source.close(); location.reload(); });
  return source;
}

function liveRunList(table) {
  const tbody = table.tBodies[0];
  const query = table.dataset.liveRuns;
  const fetching = new Set();
  listen("/api/events", table.dataset.since, {
    run: async (data) => {
      const row = tbody.querySelector(`tr[data-run="${data.run_id}"]`);
      if (row) {
        setBadge(row.querySelector("td[data-label=Status]"), data.state);
        return;
      }
      if (table.hasAttribute("data-frozen") || fetching.has(data.run_id)) return;
      fetching.add(data.run_id);  // a new run: fetch its row, if it matches the filters
      const answer = await fetch(`/runs/${data.run_id}/row${query ? "?" + query : ""}`);
      fetching.delete(data.run_id);
      if (answer.status !== 200 || tbody.querySelector(`tr[data-run="${data.run_id}"]`)) return;
      const holder = document.createElement("tbody");
      holder.innerHTML = (await answer.text()).trim();
      const fresh = holder.querySelector("tr");
      if (!fresh) return;
      fresh.classList.add("fresh");
      tbody.querySelector("tr.empty")?.remove();
      tbody.prepend(fresh);
    },
  });
}

function liveRun(article) {
  const runId = article.dataset.liveRun;
  listen(`/api/runs/${runId}/events`, article.dataset.since, {
    run: (data) => {
      setBadge(article.querySelector("[data-run-state]"), data.state);
      const reason = article.querySelector("[data-run-reason]");
      if (reason && data.reason) {
        reason.textContent = "";
        const strong = document.createElement("strong");
        strong.textContent = data.reason;
        reason.append(strong, data.message ? `: ${data.message}` : "");
      }
    },
    stage: (data) => {
      const node = article.querySelector(`[data-stage-node="${CSS.escape(data.stage)}"]`);
      if (node) {
        node.setAttribute("class", `node s-${data.state}`);
        const [icon, label] = BADGES[data.state] || ["?", data.state];
        node.querySelector("[data-icon]").textContent = icon;
        node.querySelector("[data-sub]").textContent = label;
      }
      const row = article.querySelector(`[data-stage-row="${CSS.escape(data.stage)}"]`);
      if (row) {
        setBadge(row.querySelector("td[data-label=Status]"), data.state);
        const reason = row.querySelector("[data-reason]");
        if (reason && ["failed", "skipped", "cancelled", "rolled_back", "waiting"].includes(data.state)) {
          reason.textContent = "";
          const strong = document.createElement("strong");
          strong.textContent = data.reason;
          reason.append(strong, data.message ? `: ${data.message}` : "");
        }
      }
      // A judgment's form comes from the server: reload when one starts waiting, and
      // take the form away once it is answered (here or elsewhere).
      if (data.state === "waiting") { location.reload(); return; }
      article.querySelector(`[data-judgment-stage="${CSS.escape(data.stage)}"]`)?.remove();
    },
    log: (data) => {
      const details = article.querySelector(`[data-log-stage="${CSS.escape(data.stage)}"]`);
      if (!details) return;
      const pre = details.querySelector("pre");
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(data.text);
      if (atBottom) pre.scrollTop = pre.scrollHeight;
      details.open = true;
    },
  });
}

function liveBoard(holder) {
  // Any run's change may move a release or a rollout: fetch the board again, at most
  // once a second. The server reuses what it read of the cluster for a few seconds
  // (data-cluster-cache), so once changes stop, fetch it once more after that: the
  // last change shows too.
  const cacheMs = Number(holder.dataset.clusterCache || 0) * 1000;
  let pending = null;
  let trailing = null;
  const fetchBoard = async () => {
    const answer = await fetch("/environments?fragment=1");
    if (answer.ok) holder.innerHTML = await answer.text();
  };
  const refresh = () => {
    if (!pending) pending = setTimeout(() => { pending = null; fetchBoard(); }, 1000);
    if (cacheMs) {
      clearTimeout(trailing);
      trailing = setTimeout(fetchBoard, cacheMs + 1000);
    }
  };
  listen("/api/events", null, { run: refresh, stage: refresh });
}

document.addEventListener("DOMContentLoaded", () => {
  const board = document.querySelector("[data-live-board]");
  if (board) liveBoard(board);
  const list = document.querySelector("table[data-live-runs]");
  if (list) liveRunList(list);
  const run = document.querySelector("article[data-live-run]");
  if (run) liveRun(run);
});
