// The segment builder's redraws are driven by one listener on the rule tree's container, which
// the redraw never replaces. htmx wires up swapped-in controls only after its settle delay, so a
// select changed (or a button pressed) in that window would otherwise do nothing at all.
(function () {
  "use strict";

  function start() {
    var tree = document.getElementById("rule-tree");
    if (!tree || !window.htmx) { return; }
    var url = tree.getAttribute("data-redraw-url");
    var redraw = function (values) {
      window.htmx.ajax("POST", url, { source: tree, target: tree, swap: "innerHTML", values: values });
    };
    // <select data-redraw>: the choice changes which other controls the condition has
    tree.addEventListener("change", function (event) {
      if (event.target instanceof Element && event.target.matches("[data-redraw]")) { redraw({}); }
    });
    // <button data-tree-action="add_condition:r.1">: edit the tree's shape
    tree.addEventListener("click", function (event) {
      var button = event.target instanceof Element ? event.target.closest("[data-tree-action]") : null;
      if (!button) { return; }
      event.preventDefault();
      redraw({ action: button.getAttribute("data-tree-action") });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
