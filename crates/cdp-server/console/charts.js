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
