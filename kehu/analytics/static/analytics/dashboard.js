// The KPI dashboard's charts: each <div data-dashboard-chart="id"> is drawn from the JSON in the
// <script type="application/json" id="id"> beside it (json_script), so the page needs no inline
// script. Labels arrive translated from the server.
window.addEventListener("load", function () {
  "use strict";
  if (!window.echarts) { return; }

  function sales(data) {
    return {
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 56, right: 48, top: 40, bottom: 28 },
      xAxis: { type: "category", data: data.categories },
      yAxis: [{ type: "value" }, { type: "value", minInterval: 1 }],
      series: data.series.map(function (series) {
        return { name: series.name, type: series.type, yAxisIndex: series.axis, data: series.data, smooth: false };
      })
    };
  }

  function bar(data) {
    return {
      tooltip: { trigger: "axis" },
      grid: { left: 48, right: 16, top: 16, bottom: 72 },
      xAxis: { type: "category", data: data.categories, axisLabel: { rotate: 30, interval: 0 } },
      yAxis: { type: "value", minInterval: 1 },
      series: [{ type: "bar", data: data.values }]
    };
  }

  function pie(data) {
    return {
      tooltip: { trigger: "item", formatter: "{b}: {c} ({d}%)" },
      legend: { type: "scroll", bottom: 0 },
      series: [{
        type: "pie",
        radius: ["35%", "65%"],
        center: ["50%", "45%"],
        data: data.categories.map(function (name, index) { return { name: name, value: data.values[index] }; })
          .filter(function (item) { return item.value > 0; })
      }]
    };
  }

  function heatmap(data) {
    return {
      tooltip: {
        position: "top",
        formatter: function (params) {
          var cell = params.data;
          return data.months[cell[1]] + " +" + cell[0] + ": " + cell[2] + "% (" + cell[3] + ")";
        }
      },
      grid: { left: 72, right: 88, top: 16, bottom: 48 },
      xAxis: { type: "category", data: data.offsets, name: data.offset_label, nameLocation: "middle", nameGap: 28, splitArea: { show: true } },
      yAxis: { type: "category", data: data.months, inverse: true, splitArea: { show: true } },
      visualMap: {
        min: 0, max: 100, calculable: true, orient: "vertical", right: 0, top: "middle", itemHeight: 160,
        text: ["100%", "0%"], inRange: { color: ["#f1f5fb", "#206bc4"] }
      },
      series: [{ type: "heatmap", data: data.cells, label: { show: data.offsets.length <= 13, formatter: function (params) { return params.data[2]; } } }]
    };
  }

  var builders = { sales: sales, bar: bar, pie: pie, heatmap: heatmap };
  var charts = [];
  document.querySelectorAll("[data-dashboard-chart]").forEach(function (element) {
    var source = document.getElementById(element.getAttribute("data-dashboard-chart"));
    if (!source) { return; }
    var data = JSON.parse(source.textContent);
    var build = builders[data.kind];
    if (!build) { return; }
    var chart = window.echarts.init(element);
    chart.setOption(build(data));
    element.setAttribute("data-rendered", "true");
    charts.push(chart);
  });
  window.addEventListener("resize", function () { charts.forEach(function (chart) { chart.resize(); }); });
});
