/* Batch page: the outcome chart and live progress.
 *
 * Everything comes from data-* attributes the server renders: the progress
 * URL, whether the batch is still active, the chart's labels and values, the
 * bar's parts (one per outcome, with its count) and the "N% done" pattern.
 * The parts' widths are set here (the CSP allows no style attributes). While
 * the batch is pending or running the page polls its progress JSON every
 * 1.5 s and updates the bar, the ETA, the counters and the chart; once the
 * batch stops, the page reloads so the items table and buttons match.
 */
(function () {
  "use strict";

  var POLL_MS = 1500;
  var RETRY_MS = 6000;
  // success, failed, ignored, cancelled, waiting (Bootstrap's palette)
  var CHART_COLORS = ["#198754", "#dc3545", "#6c757d", "#212529", "#dee2e6"];
  var PHONE = window.matchMedia("(max-width: 575.98px)");   // Bootstrap's xs

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
      // The chart fills its box (.batch-chart), whose height the stylesheet sets.
      // On phones it sits in half the width without a legend: the counters'
      // coloured dots name its colours.
      options: {animation: false, maintainAspectRatio: false,
                plugins: {legend: {position: "right", display: !PHONE.matches}}}
    });
  }

  function setProgress(root, percent, counts, total) {
    var bar = root.querySelector("[data-progress-bar]");
    var text = root.querySelector("[data-progress-text]");
    if (bar) {
      bar.setAttribute("aria-valuenow", String(percent));
      bar.querySelectorAll("[data-segment]").forEach(function (segment) {
        var name = segment.getAttribute("data-segment");
        var count = Number(counts[name]) || 0;
        // CSSOM: allowed by the style-src policy
        segment.style.width = (total > 0 ? count * 100 / total : 0) + "%";
        segment.setAttribute("data-count", String(count));
        segment.title = segment.getAttribute("data-label") + ": " + count;
      });
    }
    if (text) {
      text.textContent = (text.getAttribute("data-pattern") || "{percent}%")
        .split("{percent}").join(String(percent));
    }
  }

  function renderedCounts(root) {
    var counts = {};
    root.querySelectorAll("[data-segment]").forEach(function (segment) {
      counts[segment.getAttribute("data-segment")] = Number(segment.getAttribute("data-count")) || 0;
    });
    return counts;
  }

  function render(root, chart, data) {
    setProgress(root, data.percent, data.by_status, data.by_status.total);
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
    var bar = root.querySelector("[data-progress-bar]");
    if (bar) {
      setProgress(root, Number(bar.getAttribute("aria-valuenow")) || 0, renderedCounts(root),
                  Number(bar.getAttribute("data-total")) || 0);
    }
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
