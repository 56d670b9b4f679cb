/* Small behaviours of the portal's pages (no inline scripts: the CSP allows only this file).
 *
 * - Table fields of a node form: "Add row" copies the last row with blank inputs and the
 *   next index in its names (lines-0-item -> lines-1-item); "Remove" deletes a row, or
 *   blanks it when it is the only one.
 * - A header checkbox with data-check-all="NAME" ticks every checkbox named NAME.
 * - Buttons with data-confirm="question" ask before submitting their form.
 */
(function () {
  "use strict";

  function clearInputs(row) {
    row.querySelectorAll("input, select, textarea").forEach(function (input) {
      if (input.type === "checkbox" || input.type === "radio") {
        input.checked = false;
      } else if (input.tagName === "SELECT") {
        input.selectedIndex = 0;
      } else {
        input.value = "";
      }
      input.classList.remove("is-invalid");
    });
  }

  function nextIndex(fieldset, prefix) {
    var highest = -1;
    var pattern = new RegExp("^" + prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "-(\\d+)-");
    fieldset.querySelectorAll("[name]").forEach(function (input) {
      var match = pattern.exec(input.name);
      if (match) { highest = Math.max(highest, parseInt(match[1], 10)); }
    });
    return highest + 1;
  }

  function renumber(row, prefix, index) {
    var pattern = new RegExp("^(" + prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "-)\\d+(-)");
    row.querySelectorAll("[name]").forEach(function (input) {
      input.name = input.name.replace(pattern, "$1" + index + "$2");
      if (input.id) { input.id = input.name; }
    });
  }

  function addRow(fieldset) {
    var prefix = fieldset.getAttribute("data-table-field");
    var rows = fieldset.querySelectorAll("[data-table-row]");
    var last = rows[rows.length - 1];
    var copy = last.cloneNode(true);
    clearInputs(copy);
    renumber(copy, prefix, nextIndex(fieldset, prefix));
    last.parentNode.appendChild(copy);
    var first = copy.querySelector("input, select, textarea");
    if (first) { first.focus(); }
  }

  function removeRow(fieldset, row) {
    if (fieldset.querySelectorAll("[data-table-row]").length > 1) {
      row.remove();
    } else {
      clearInputs(row);
    }
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    var fieldset = target.closest("[data-table-field]");
    if (fieldset && target.closest("[data-add-row]")) {
      event.preventDefault();
      addRow(fieldset);
    } else if (fieldset && target.closest("[data-remove-row]")) {
      event.preventDefault();
      removeRow(fieldset, target.closest("[data-table-row]"));
    }
    var confirmButton = target.closest("[data-confirm]");
    if (confirmButton && !window.confirm(confirmButton.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
  });

  document.addEventListener("change", function (event) {
    var name = event.target.getAttribute && event.target.getAttribute("data-check-all");
    if (!name) { return; }
    var scope = event.target.closest("form") || document;
    scope.querySelectorAll('input[type="checkbox"][name="' + name + '"]').forEach(function (box) {
      box.checked = event.target.checked;
    });
  });
})();
