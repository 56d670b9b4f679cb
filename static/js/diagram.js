/* Process diagrams (the instance page and the admin process page), drawn with the vendored
 * bpmn-js viewer (static/vendor/bpmn-js, window.BpmnJS).
 *
 * Each [data-bpmn-diagram] container says everything in data-* attributes the server renders:
 *   data-url            the BPMN XML to fetch (same origin, with the session cookie)
 *   data-done, data-active, data-rejected
 *                       JSON lists of user task ids: drawn with the diagram-done / -active /
 *                       -rejected markers (classes styled in static/css/diagram.css)
 *   data-counts         JSON {user task id: n}: a count badge on each of those tasks
 *   data-count-title    the badge's tooltip ("Pending tasks"), followed by ": n"
 *   data-failure-text, data-download-text
 *                       what to say, and the link to the file, when the diagram cannot be drawn
 * Buttons with data-diagram-zoom="in|out|fit" inside the container's parent [data-bpmn-panel]
 * zoom it (their [data-diagram-controls] group is hidden when drawing fails); dragging pans. The wheel is left to the page (scrolling past the diagram must not
 * zoom it). Once drawn the container gets data-bpmn-state="ready", or "failed" with the text.
 * bpmn-js sets its styles through the CSSOM, which the CSP (style-src 'self') allows.
 */
(function () {
  "use strict";

  var ZOOM_STEP = 1.25;
  var MIN_ZOOM = 0.2;
  var MAX_ZOOM = 4;
  var MARKERS = [["data-done", "diagram-done"], ["data-active", "diagram-active"],
                 ["data-rejected", "diagram-rejected"]];

  function readJson(element, name, fallback) {
    var raw = element.getAttribute(name);
    if (!raw) {
      return fallback;
    }
    try {
      return JSON.parse(raw);
    } catch (error) {
      return fallback;
    }
  }

  function setStatus(container, text) {
    var status = container.querySelector("[data-bpmn-status]");
    if (!status) {
      status = document.createElement("p");
      status.className = "bpmn-diagram-status";
      status.setAttribute("data-bpmn-status", "");
      container.appendChild(status);
    }
    status.textContent = text;
    return status;
  }

  function showFailure(container, reason) {
    container.setAttribute("data-bpmn-state", "failed");
    container.classList.add("bpmn-diagram-failed");
    var status = setStatus(container, container.getAttribute("data-failure-text") ||
                           "The diagram could not be shown.");
    var url = container.getAttribute("data-url");
    var linkText = container.getAttribute("data-download-text");
    if (url && linkText) {
      var link = document.createElement("a");
      link.href = url;
      link.textContent = linkText;
      status.appendChild(document.createTextNode(" "));
      status.appendChild(link);
    }
    var panel = container.closest("[data-bpmn-panel]");
    var controls = panel && panel.querySelector("[data-diagram-controls]");
    if (controls) {
      controls.hidden = true;  // nothing to zoom
    }
    if (window.console && reason) {
      window.console.warn("diagram:", reason);
    }
  }

  // Markers and badges go only on elements the diagram has: a node of the version that the
  // file does not draw (or a stale id) is skipped rather than breaking the whole drawing.
  function addMarkers(container, viewer) {
    var canvas = viewer.get("canvas");
    var registry = viewer.get("elementRegistry");
    MARKERS.forEach(function (pair) {
      readJson(container, pair[0], []).forEach(function (id) {
        if (typeof id === "string" && registry.get(id)) {
          canvas.addMarker(id, pair[1]);
        }
      });
    });
  }

  function addCounts(container, viewer) {
    var counts = readJson(container, "data-counts", {});
    var registry = viewer.get("elementRegistry");
    var overlays = viewer.get("overlays");
    var title = container.getAttribute("data-count-title") || "";
    Object.keys(counts).forEach(function (id) {
      var count = counts[id];
      if (!registry.get(id) || typeof count !== "number") {
        return;
      }
      var badge = document.createElement("span");
      badge.className = "diagram-count-badge";
      badge.setAttribute("data-count-for", id);
      badge.textContent = String(count);
      badge.title = title ? title + ": " + count : String(count);
      overlays.add(id, "pending-count", {position: {top: -10, right: 10}, html: badge});
    });
  }

  function bindZoom(container, viewer) {
    var panel = container.closest("[data-bpmn-panel]");
    if (!panel) {
      return;
    }
    var canvas = viewer.get("canvas");
    panel.querySelectorAll("[data-diagram-zoom]").forEach(function (button) {
      button.disabled = false;
      button.addEventListener("click", function () {
        var how = button.getAttribute("data-diagram-zoom");
        if (how === "fit") {
          canvas.zoom("fit-viewport", "auto");
        } else {
          var scale = canvas.zoom() * (how === "in" ? ZOOM_STEP : 1 / ZOOM_STEP);
          canvas.zoom(Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, scale)), "auto");
        }
      });
    });
  }

  function draw(container) {
    var url = container.getAttribute("data-url");
    if (typeof window.BpmnJS === "undefined" || !url || !window.fetch) {
      showFailure(container, "viewer or address missing");
      return;
    }
    var holder = document.createElement("div");
    holder.className = "bpmn-diagram-canvas";
    container.appendChild(holder);
    var viewer = new window.BpmnJS({container: holder, zoomScroll: {enabled: false}});
    window.fetch(url, {credentials: "same-origin", headers: {"Accept": "application/xml"}})
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (xml) {
        return viewer.importXML(xml);
      })
      .then(function () {
        viewer.get("canvas").zoom("fit-viewport", "auto");
        addMarkers(container, viewer);
        addCounts(container, viewer);
        bindZoom(container, viewer);
        var status = container.querySelector("[data-bpmn-status]");
        if (status) {
          status.remove();
        }
        container.setAttribute("data-bpmn-state", "ready");
      })
      .catch(function (error) {
        viewer.destroy();
        holder.remove();
        showFailure(container, error && error.message);
      });
  }

  function start() {
    document.querySelectorAll("[data-bpmn-diagram]").forEach(draw);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
