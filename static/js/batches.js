/* Batch page: the outcome chart and live progress.
 *
 * Everything comes from data-* attributes the server renders: the progress
 * URL, whether the batch is still active, the chart's labels and values.
 * While the batch is pending or running the page polls its progress JSON
 * every 1.5 s and updates the bar, the ETA, the counters and the chart; once
 * the batch stops, the page reloads so the items table and buttons match.
 */
(function () {
  "use strict";

  var POLL_MS = 1500;
  var RETRY_MS = 6000;
  // success, failed, ignored, cancelled, waiting (Bootstrap's palette)
  var CHART_COLORS = ["#198754", "#dc3545", "#6c757d", "#212529", "#dee2e6"];

  function readJson(element, name) {
    try {
      return JSON.parse(element.getAttribute(name) || "[]");
    } catch (error) {
      return [];
    }
  }

  function chartValues(byStatus) {
    return [byStatus.success, byStatus.failed, byStatus.ignored, byStatus.cancelled,
            byStatus.pending + byStatus.running];
  }

  function makeChart(canvas) {
    if (!canvas || typeof window.Chart === "undefined") {
      return null;
    }
    return new window.Chart(canvas, {
      type: "doughnut",
      data: {
        labels: readJson(canvas, "data-labels"),
        datasets: [{data: readJson(canvas, "data-values"), backgroundColor: CHART_COLORS}]
      },
      options: {animation: false, plugins: {legend: {position: "bottom"}}}
    });
  }

  function setPercent(root, percent) {
    var bar = root.querySelector("[data-progress-bar]");
    var fill = root.querySelector("[data-progress-fill]");
    var text = root.querySelector("[data-progress-text]");
    if (bar) {
      bar.setAttribute("aria-valuenow", String(percent));
    }
    if (fill) {
      fill.style.width = percent + "%";  // CSSOM: allowed by the style-src policy
      fill.setAttribute("data-percent", String(percent));
    }
    if (text) {
      text.textContent = percent + "%";
    }
  }

  function render(root, chart, data) {
    setPercent(root, data.percent);
    var eta = root.querySelector("[data-eta]");
    if (eta) {
      eta.textContent = data.eta_text || "";
    }
    Object.keys(data.by_status).forEach(function (name) {
      var cell = document.querySelector('[data-counter="' + name + '"]');
      if (cell) {
        cell.textContent = String(data.by_status[name]);
      }
    });
    var badge = document.querySelector("[data-status-badge]");
    if (badge && data.status_label) {
      badge.textContent = data.status_label;
    }
    if (chart) {
      chart.data.datasets[0].data = chartValues(data.by_status);
      chart.update();
    }
  }

  function poll(root, chart) {
    fetch(root.getAttribute("data-progress-url"), {
      credentials: "same-origin",
      headers: {"Accept": "application/json"}
    }).then(function (response) {
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      return response.json();
    }).then(function (data) {
      render(root, chart, data);
      if (data.active) {
        window.setTimeout(poll, POLL_MS, root, chart);
      } else {
        window.location.reload();
      }
    }).catch(function () {
      window.setTimeout(poll, RETRY_MS, root, chart);  // network hiccup: try again later
    });
  }

  function start() {
    var root = document.getElementById("batch-progress");
    if (!root) {
      return;
    }
    var fill = root.querySelector("[data-progress-fill]");
    setPercent(root, Number(fill ? fill.getAttribute("data-percent") : 0) || 0);
    var chart = makeChart(document.getElementById("batch-chart"));
    if (root.getAttribute("data-active") === "1") {
      window.setTimeout(poll, POLL_MS, root, chart);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
