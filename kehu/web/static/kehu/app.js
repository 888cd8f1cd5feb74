// Small behaviours shared by every page; no inline scripts, so a strict CSP stays possible.
(function () {
  "use strict";

  // <form data-confirm="Are you sure?">: ask before a destructive POST.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  }, true);

  // <button data-copy-target="#id">: copy that element's text (the new API token).
  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("[data-copy-target]") : null;
    if (!button) { return; }
    var source = document.querySelector(button.getAttribute("data-copy-target"));
    if (!source) { return; }
    var text = (source.value !== undefined ? source.value : source.textContent).trim();
    var done = function () {
      var original = button.textContent;
      button.textContent = button.getAttribute("data-copied-label") || original;
      window.setTimeout(function () { button.textContent = original; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
    } else {
      source.select && source.select();
      document.execCommand("copy");
      done();
    }
  });
})();

// <div class="kehu-chart" data-chart-source="id-of-json-script">: a daily line chart drawn with
// ECharts from {"days": [...], "series": [{"name", "data"}]} (ECharts loads only on such pages).
window.addEventListener("load", function () {
  "use strict";
  if (!window.echarts) { return; }
  document.querySelectorAll(".kehu-chart[data-chart-source]").forEach(function (element) {
    var source = document.getElementById(element.getAttribute("data-chart-source"));
    if (!source) { return; }
    var data = JSON.parse(source.textContent);
    var chart = window.echarts.init(element);
    chart.setOption({
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 40, right: 16, top: 36, bottom: 24 },
      xAxis: { type: "category", data: data.days },
      yAxis: { type: "value", minInterval: 1 },
      series: data.series.map(function (series) {
        return { name: series.name, type: "line", data: series.data };
      })
    });
    window.addEventListener("resize", function () { chart.resize(); });
  });
});
