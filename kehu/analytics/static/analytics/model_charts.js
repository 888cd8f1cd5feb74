// The model report's charts, drawn with ECharts from the page's json_script data (CSP-safe):
// - "calibration": predicted vs actual hold-out purchases by calibration frequency (bars);
// - "roc": the churn back-test's ROC curve against the chance diagonal.
window.addEventListener("load", function () {
  "use strict";
  if (!window.echarts) { return; }
  document.querySelectorAll(".kehu-model-chart[data-chart-source]").forEach(function (element) {
    var source = document.getElementById(element.getAttribute("data-chart-source"));
    if (!source) { return; }
    var data = JSON.parse(source.textContent);
    var chart = window.echarts.init(element);
    if (data.kind === "roc") {
      chart.setOption({
        tooltip: { trigger: "item" },
        legend: { top: 0 },
        grid: { left: 48, right: 16, top: 36, bottom: 40 },
        xAxis: { type: "value", min: 0, max: 1, name: data.x_label, nameLocation: "middle", nameGap: 26 },
        yAxis: { type: "value", min: 0, max: 1, name: data.y_label },
        series: [
          { name: data.series_name, type: "line", showSymbol: false, data: data.points },
          { name: data.chance_name, type: "line", showSymbol: false, lineStyle: { type: "dashed" }, data: [[0, 0], [1, 1]] }
        ]
      });
    } else {
      chart.setOption({
        tooltip: { trigger: "axis" },
        legend: { top: 0 },
        grid: { left: 48, right: 16, top: 36, bottom: 40 },
        xAxis: { type: "category", data: data.categories, name: data.x_label, nameLocation: "middle", nameGap: 26 },
        yAxis: { type: "value" },
        series: data.series.map(function (series) {
          return { name: series.name, type: "bar", data: series.data };
        })
      });
    }
    window.addEventListener("resize", function () { chart.resize(); });
  });
});
