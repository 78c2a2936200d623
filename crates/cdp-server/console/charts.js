// Charts drawn as SVG by hand: no library, nothing fetched from elsewhere (the page's
// Content-Security-Policy would refuse it anyway). Labels and numbers come translated and
// formatted by the caller.

import { s, h } from './dom.js';

// Horizontal bars: items [{label, value, display}]; `display` is what is written (a number
// formatted for the locale, or "<20" where a small count is suppressed).
export function barChart(title, items, options = {}) {
  const width = 420;
  const row = 26;
  const labelWidth = options.labelWidth || 130;
  const max = Math.max(1, ...items.map((item) => (typeof item.value === 'number' ? item.value : 0)));
  const svg = s('svg', {
    viewBox: `0 0 ${width} ${items.length * row + 8}`,
    class: 'chart bars',
    role: 'img',
    'aria-label': title,
  });
  items.forEach((item, i) => {
    const y = i * row + 4;
    const value = typeof item.value === 'number' ? item.value : 0;
    const barWidth = Math.round(((width - labelWidth - 70) * value) / max);
    svg.append(
      s('text', { x: labelWidth - 8, y: y + 16, 'text-anchor': 'end', class: 'label' }, item.label),
      s('rect', { x: labelWidth, y: y + 3, width: Math.max(barWidth, 1), height: row - 8, rx: 3, class: `bar bar-${i % 6}` }),
      s('text', { x: labelWidth + barWidth + 6, y: y + 16, class: 'value' }, item.display),
    );
  });
  return figure(title, svg);
}

// A funnel: stages in order, each bar centred and as wide as its share of the largest.
export function funnelChart(title, items) {
  const width = 420;
  const row = 30;
  const max = Math.max(1, ...items.map((item) => (typeof item.value === 'number' ? item.value : 0)));
  const svg = s('svg', {
    viewBox: `0 0 ${width} ${items.length * row + 8}`,
    class: 'chart funnel',
    role: 'img',
    'aria-label': title,
  });
  items.forEach((item, i) => {
    const y = i * row + 4;
    const value = typeof item.value === 'number' ? item.value : 0;
    const barWidth = Math.max(2, Math.round(((width - 40) * value) / max));
    // A label fits inside a wide bar; beside a narrow one it is written in the page's ink.
    const inside = barWidth > 160;
    svg.append(
      s('rect', { x: (width - barWidth) / 2, y, width: barWidth, height: row - 6, rx: 4, class: `bar bar-${i % 6}` }),
      s('text', {
        x: inside ? width / 2 : (width + barWidth) / 2 + 6,
        y: y + 17,
        'text-anchor': inside ? 'middle' : 'start',
        class: inside ? 'funnel-label' : 'label',
      }, `${item.label} · ${item.display}`),
    );
  });
  return figure(title, svg);
}

// Lines over time: `xs` the labels of the points (dates, formatted by the caller), `series`
// [{label, values}] with one value per point; a withheld value (null) breaks its line, so a
// small count is never drawn as zero. Each point carries its exact figure as a tooltip.
export function lineChart(title, xs, series, labels) {
  const width = 560;
  const height = 230;
  const left = 52;
  const right = 12;
  const top = 10;
  const bottom = 58;
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const all = series.flatMap((line) => line.values.filter((v) => typeof v === 'number'));
  const max = Math.max(1, ...all);
  const x = (i) => left + (xs.length < 2 ? plotWidth / 2 : (plotWidth * i) / (xs.length - 1));
  const y = (v) => top + plotHeight - (plotHeight * v) / max;
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart lines', role: 'img', 'aria-label': title });
  [0, 0.5, 1].forEach((share) => {
    const value = Math.round(max * share);
    svg.append(
      s('line', { x1: left, x2: width - right, y1: y(value), y2: y(value), class: 'grid' }),
      s('text', { x: left - 6, y: y(value) + 4, 'text-anchor': 'end', class: 'label' }, labels.format(value)),
    );
  });
  // The first and last dates under the axis (more would crowd it).
  [0, xs.length - 1].filter((i, n, list) => i >= 0 && list.indexOf(i) === n).forEach((i) => {
    svg.append(s('text', { x: x(i), y: top + plotHeight + 16, 'text-anchor': i === 0 && xs.length > 1 ? 'start' : 'end', class: 'label' }, xs[i]));
  });
  series.forEach((line, n) => {
    let run = [];
    const flush = () => {
      if (run.length > 1) svg.append(s('polyline', { points: run.join(' '), class: `line stroke-${n % 6}` }));
      run = [];
    };
    line.values.forEach((value, i) => {
      if (typeof value !== 'number') {
        flush();
        return;
      }
      run.push(`${x(i).toFixed(1)},${y(value).toFixed(1)}`);
      svg.append(s('circle', { cx: x(i), cy: y(value), r: 3, class: `dot bar-${n % 6}` },
        s('title', {}, `${line.label} · ${xs[i]} · ${labels.format(value)}`)));
    });
    flush();
    // The legend, in rows of four under the dates.
    const lx = left + (n % 4) * 125;
    const ly = top + plotHeight + 34 + Math.floor(n / 4) * 16;
    svg.append(
      s('rect', { x: lx, y: ly - 9, width: 10, height: 10, class: `bar-${n % 6}` }),
      s('text', { x: lx + 14, y: ly, class: 'label legend' }, line.label),
    );
  });
  return figure(title, svg);
}

// The identity graph of one person: the profile in the middle, its identifiers around it,
// coloured by type; each spoke is a link the evidence made.
export function identityGraph(title, centre, nodes) {
  const size = 420;
  const middle = size / 2;
  const radius = size / 2 - 70;
  const svg = s('svg', { viewBox: `0 0 ${size} ${size}`, class: 'chart graph', role: 'img', 'aria-label': title });
  const types = [...new Set(nodes.map((node) => node.type))];
  nodes.forEach((node, i) => {
    const angle = (2 * Math.PI * i) / Math.max(nodes.length, 1) - Math.PI / 2;
    const x = middle + radius * Math.cos(angle);
    const y = middle + radius * Math.sin(angle);
    const colour = types.indexOf(node.type) % 6;
    svg.append(
      s('line', { x1: middle, y1: middle, x2: x, y2: y, class: 'edge' }),
      s('circle', { cx: x, cy: y, r: 9, class: `node bar-${colour}` }, s('title', {}, `${node.type}: ${node.value}`)),
      s('text', { x, y: y + 24, 'text-anchor': 'middle', class: 'node-label' }, node.type),
      s('text', { x, y: y + 38, 'text-anchor': 'middle', class: 'node-value' }, node.value),
    );
  });
  svg.append(
    s('circle', { cx: middle, cy: middle, r: 16, class: 'node centre' }),
    s('text', { x: middle, y: middle + 34, 'text-anchor': 'middle', class: 'node-label' }, centre),
  );
  return figure(title, svg);
}

function figure(title, svg) {
  return h('figure', { class: 'chart-box' }, h('figcaption', {}, title), svg);
}

// The RFM heat map: recency score down (5 = bought recently, at the top), frequency score
// across; each cell's shade is its share of the fullest cell. Withheld cells (fewer people
// than the minimum audience size) are drawn hatched, with the threshold written in.
export function heatMap(title, cells, labels) {
  const size = 5;
  const cell = 62;
  const left = 46;
  const top = 8;
  const width = left + size * cell + 140;
  const height = top + size * cell + 40;
  const max = Math.max(1, ...cells.map((c) => (typeof c.people === 'number' ? c.people : 0)));
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart heat', role: 'img', 'aria-label': title });
  svg.append(s('defs', {}, s('pattern', { id: 'withheld', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' },
    s('line', { x1: 0, y1: 0, x2: 0, y2: 6, class: 'hatch' }))));
  for (let r = size; r >= 1; r -= 1) {
    for (let f = 1; f <= size; f += 1) {
      const found = cells.find((c) => c.r === r && c.f === f);
      const x = left + (f - 1) * cell;
      const y = top + (size - r) * cell;
      const withheld = found && found.people === null;
      const people = found && typeof found.people === 'number' ? found.people : 0;
      const shade = withheld ? 0 : people / max;
      svg.append(
        s('rect', { x, y, width: cell - 2, height: cell - 2, rx: 3, class: withheld ? 'withheld' : 'heat-cell', 'fill-opacity': withheld ? 1 : (0.08 + 0.92 * shade).toFixed(2) }),
        s('text', { x: x + cell / 2 - 1, y: y + cell / 2 + 4, 'text-anchor': 'middle', class: shade > 0.55 ? 'heat-label light' : 'heat-label' },
          withheld ? labels.withheld : labels.format(people)),
      );
    }
    svg.append(s('text', { x: left - 8, y: top + (size - r) * cell + cell / 2 + 4, 'text-anchor': 'end', class: 'label' }, `R${r}`));
  }
  for (let f = 1; f <= size; f += 1) {
    svg.append(s('text', { x: left + (f - 1) * cell + cell / 2, y: top + size * cell + 16, 'text-anchor': 'middle', class: 'label' }, `F${f}`));
  }
  svg.append(s('text', { x: left, y: top + size * cell + 34, class: 'label' }, labels.axes));
  return figure(title, svg);
}
