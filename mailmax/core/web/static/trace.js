// MailMax web admin: the live trace. Reads the server-sent events of the page's filters and
// adds one row per event, newest first, keeping at most data-limit rows.
"use strict";
(function () {
  const table = document.getElementById("trace-events");
  const status = document.getElementById("trace-status");
  if (!table || !status || !window.EventSource) {
    return;
  }
  const rows = table.tBodies[0];
  const limit = Number(table.dataset.limit) || 500;
  const source = new EventSource(table.dataset.source);

  function show(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function cell(row, text, name) {
    const td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "" : String(text);
    if (name) {
      td.className = name;
    }
    row.appendChild(td);
  }

  source.onopen = function () {
    show("open", "Tracing: events appear below as they happen.");
  };
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) {
      show("closed", "The trace has stopped (signed out, or the server refused it); reload the page.");
    } else {
      show("connecting", "The connection was lost; trying again…");
    }
  };
  source.onmessage = function (message) {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch (error) {
      return;
    }
    const row = document.createElement("tr");
    const time = typeof event.time === "number" ? new Date(event.time * 1000) : null;
    cell(row, time ? time.toISOString().slice(11, 19) : "");
    cell(row, event.service);
    cell(row, event.category);
    cell(row, event.ip);
    cell(row, event.user);
    cell(row, event.text, "text");
    rows.insertBefore(row, rows.firstChild);
    while (rows.rows.length > limit) {
      rows.deleteRow(-1);
    }
  };
  window.addEventListener("pagehide", function () {
    source.close();
  });
})();
