/* Task selection for batch approve, kept across the pages of My tasks.
 *
 * My tasks (form[data-task-selection="NODE"]): the ticked task ids of one node
 * live in sessionStorage (this tab only) under "portal.taskSelection.NODE", so
 * paging, filtering by title and coming back keep them; opening another node
 * starts a new selection. The submit button counts them with the two labels the
 * server rendered (data-label-one / data-label-other, "{num}" in place of the
 * number). On submit the ids from other pages go along as hidden inputs and the
 * form is posted: thousands of ids do not fit in a URL. Without scripts the form
 * still sends this page's ticks by GET.
 *
 * The batch form (form[data-selection-confirm="NODE"]): the ids it holds are the
 * selection again (a form sent back with errors keeps them); confirming clears it,
 * since those tasks are now in a batch.
 */
(function () {
  "use strict";

  var PREFIX = "portal.taskSelection.";
  var ADDED = "data-selection-added";   // inputs made on submit, removed when the page is shown again

  function storage() {
    try {
      return window.sessionStorage;
    } catch (error) {
      return null;   // storage disabled: the page still works for its own ticks
    }
  }

  function load(node) {
    var store = storage();
    var ids = [];
    try {
      ids = JSON.parse((store && store.getItem(PREFIX + node)) || "[]");
    } catch (error) {
      ids = [];
    }
    return new Set(Array.isArray(ids) ? ids.map(String) : []);
  }

  function save(node, selected) {
    var store = storage();
    if (!store) {
      return;
    }
    if (selected.size) {
      store.setItem(PREFIX + node, JSON.stringify(Array.from(selected)));
    } else {
      store.removeItem(PREFIX + node);
    }
  }

  function forgetOtherNodes(node) {
    var store = storage();
    if (!store) {
      return;
    }
    var stale = [];
    for (var i = 0; i < store.length; i += 1) {
      var key = store.key(i);
      if (key && key.indexOf(PREFIX) === 0 && key !== PREFIX + node) {
        stale.push(key);
      }
    }
    stale.forEach(function (key) { store.removeItem(key); });
  }

  function pluralLabel(button, count) {
    var form = "other";
    try {
      form = new Intl.PluralRules(document.documentElement.lang || "en").select(count);
    } catch (error) {
      form = count === 1 ? "one" : "other";
    }
    var pattern = button.getAttribute(form === "one" ? "data-label-one" : "data-label-other");
    return pattern.split("{num}").join(String(count));
  }

  function myTasks(form) {
    var node = form.getAttribute("data-task-selection");
    var max = parseInt(form.getAttribute("data-max-selection"), 10) || Infinity;
    var submit = form.querySelector("[data-selection-submit]");
    var headerBox = form.querySelector("[data-check-all]");
    var selectPage = form.querySelector("[data-select-page]");
    var clear = form.querySelector("[data-clear-selection]");
    var selected;

    function boxes() {
      return Array.prototype.slice.call(form.querySelectorAll('input[type="checkbox"][name="task_ids"]'));
    }

    function show() {
      var onPage = boxes();
      var ticked = onPage.filter(function (box) { return box.checked; }).length;
      submit.textContent = pluralLabel(submit, selected.size);
      submit.setAttribute("data-selected", String(selected.size));
      submit.disabled = selected.size === 0 || selected.size > max;
      submit.title = selected.size > max ? submit.getAttribute("data-too-many") : "";
      if (headerBox) {
        headerBox.checked = onPage.length > 0 && ticked === onPage.length;
        headerBox.indeterminate = ticked > 0 && ticked < onPage.length;
      }
      if (selectPage) {
        selectPage.hidden = onPage.length === 0 || ticked === onPage.length;
      }
      if (clear) {
        clear.hidden = selected.size === 0;
      }
    }

    function tick(box, checked) {
      box.checked = checked;
      if (checked) {
        selected.add(box.value);
      } else {
        selected.delete(box.value);
      }
    }

    function restore() {
      selected = load(node);
      boxes().forEach(function (box) { box.checked = selected.has(box.value); });
      form.querySelectorAll("[" + ADDED + "]").forEach(function (input) { input.remove(); });
      form.method = "get";
      show();
    }

    form.addEventListener("change", function (event) {
      var target = event.target;
      if (target === headerBox) {
        boxes().forEach(function (box) { tick(box, target.checked); });
      } else if (target.name === "task_ids") {
        tick(target, target.checked);
      } else {
        return;
      }
      save(node, selected);
      show();
    });

    if (selectPage) {
      selectPage.addEventListener("click", function () {
        boxes().forEach(function (box) { tick(box, true); });
        save(node, selected);
        show();
      });
    }
    if (clear) {
      clear.addEventListener("click", function () {
        selected.clear();
        boxes().forEach(function (box) { box.checked = false; });
        save(node, selected);
        show();
      });
    }

    form.addEventListener("submit", function (event) {
      var submitter = event.submitter;
      if (submitter && submitter.name === "all") {
        return;   // every matching task: the server finds them, no ids to send
      }
      if (!selected.size) {
        event.preventDefault();
        return;
      }
      var onPage = {};
      boxes().forEach(function (box) { onPage[box.value] = true; });
      function hidden(name, value) {
        var input = document.createElement("input");
        input.type = "hidden";
        input.name = name;
        input.value = value;
        input.setAttribute(ADDED, "");
        form.appendChild(input);
      }
      selected.forEach(function (id) {
        if (!onPage[id]) {
          hidden("task_ids", id);
        }
      });
      hidden("csrf_token", form.getAttribute("data-post-csrf"));
      hidden("preview", "1");
      form.method = "post";
    });

    forgetOtherNodes(node);
    restore();
    // Back from the batch form: the browser may show this page as it was left.
    window.addEventListener("pageshow", function (event) {
      if (event.persisted) {
        restore();
      }
    });
  }

  function batchForm(form) {
    var node = form.getAttribute("data-selection-confirm");
    var ids = Array.prototype.map.call(form.querySelectorAll('input[name="task_ids"]'),
                                       function (input) { return input.value; });
    if (ids.length) {
      forgetOtherNodes(node);
      save(node, new Set(ids));
    }
    form.addEventListener("submit", function () {
      save(node, new Set());
    });
  }

  function start() {
    document.querySelectorAll("form[data-task-selection]").forEach(myTasks);
    document.querySelectorAll("form[data-selection-confirm]").forEach(batchForm);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
