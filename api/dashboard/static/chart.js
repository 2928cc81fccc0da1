// A coupon's redemptions and discount per local day, from GET /v1/analytics/daily, drawn as an
// inline SVG (bars: redemptions; line: discount) with the same figures in a table.

import { api, el, query, row } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
const DAYS = 30;

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

/** YYYY-MM-DD of a date in the browser's zone. */
export function dayOf(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** The last DAYS local days, oldest first. */
function lastDays() {
  const today = new Date();
  return Array.from({ length: DAYS }, (_, i) => {
    const date = new Date(today.getFullYear(), today.getMonth(), today.getDate() - (DAYS - 1 - i));
    return dayOf(date);
  });
}

function draw(days, byDay) {
  const width = 600;
  const height = 200;
  const left = 34;
  const bottom = 24;
  const top = 12;
  const plotHeight = height - bottom - top;
  const slot = (width - left - 8) / days.length;
  const maxCount = Math.max(1, ...days.map((day) => byDay.get(day)?.redemptions ?? 0));
  const maxDiscount = Math.max(1, ...days.map((day) => Number(byDay.get(day)?.discount_total ?? 0)));
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart-svg",
    role: "img",
    "aria-labelledby": "chart-summary",
    preserveAspectRatio: "xMidYMid meet",
  });
  chart.append(svg("line", { x1: left, y1: top + plotHeight, x2: width - 4, y2: top + plotHeight, class: "axis" }));
  chart.append(svg("text", { x: left - 6, y: top + 8, class: "tick", "text-anchor": "end" }, String(maxCount)));
  chart.append(svg("text", { x: left - 6, y: top + plotHeight, class: "tick", "text-anchor": "end" }, "0"));
  const points = [];
  days.forEach((day, i) => {
    const figures = byDay.get(day);
    const count = figures?.redemptions ?? 0;
    const x = left + i * slot;
    if (count > 0) {
      const barHeight = (count / maxCount) * plotHeight;
      chart.append(
        svg("rect", { x: x + slot * 0.15, y: top + plotHeight - barHeight, width: slot * 0.7, height: barHeight, class: "bar" },
          svg("title", {}, `${day}: ${count} redemptions`)),
      );
    }
    const discount = Number(figures?.discount_total ?? 0);
    points.push(`${(x + slot / 2).toFixed(1)},${(top + plotHeight - (Math.max(discount, 0) / maxDiscount) * plotHeight).toFixed(1)}`);
    if (discount > 0) {
      chart.append(svg("circle", { cx: (x + slot / 2).toFixed(1), cy: points[points.length - 1].split(",")[1], r: 3.5, class: "discount-dot" },
        svg("title", {}, `${day}: ${figures.discount_total} discount`)));
    }
    if ((i % 7 === 0 && days.length - 1 - i >= 4) || i === days.length - 1) {
      chart.append(svg("text", { x: x + slot / 2, y: height - 6, class: "tick", "text-anchor": "middle" }, day.slice(5)));
    }
  });
  chart.insertBefore(svg("polyline", { points: points.join(" "), class: "discount-line" }), chart.querySelector("circle"));
  const legend = el(
    "p",
    { class: "legend" },
    el("span", { class: "key bar-key", "aria-hidden": "true" }), " redemptions (bars) ",
    el("span", { class: "key line-key", "aria-hidden": "true" }), ` discount (line, top = ${maxDiscount.toFixed(2)})`,
  );
  return [chart, legend];
}

/** Loads and draws the last 30 days of `code`; answers the rows shown. */
export async function showChart(code, holder, summary, table) {
  const days = lastDays();
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const params = { from: days[0], to: days[days.length - 1], group_by: "coupon", tz };
  const answer = await api("GET", `/v1/analytics/daily${query(params)}`);
  const rows = answer.data.filter((figures) => figures.code === code);
  const byDay = new Map(rows.map((figures) => [figures.day, figures]));
  const redemptions = rows.reduce((sum, figures) => sum + figures.redemptions, 0);
  const discount = rows.reduce((sum, figures) => sum + Number(figures.discount_total), 0);
  summary.textContent =
    `Last ${DAYS} days (${tz}): ${redemptions} ${redemptions === 1 ? "redemption" : "redemptions"}, ` +
    `${discount.toFixed(2)} discount in total.`;
  holder.replaceChildren(...draw(days, byDay));
  table.querySelector("tbody").replaceChildren(
    ...(rows.length
      ? rows.map((figures) => row([figures.day, figures.redemptions, figures.reversals, figures.discount_total, figures.revenue_total]))
      : [el("tr", {}, el("td", { colspan: 5, text: "No redemptions in these days." }))]),
  );
  return rows;
}
