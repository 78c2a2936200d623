// The overview and the audience builder.

import { api } from './api.js';
import { h } from './dom.js';
import { t, fmtNumber, fmtDate } from './i18n.js';
import { barChart, identityGraph } from './charts.js';
import {
  COUNT_ROLES, BUILD_ROLES, PROFILE_ROLES, GRAPH_ROLES, REQUEST_ROLES, HANDLE_ROLES, AUDIT_ROLES, TIERS, LIFECYCLE, CHANNELS, IDENTIFIER_TYPES, REQUEST_TYPES, has, raw, code, display, errorBox, purposePicker, table, jsonText, charts, COVERAGE_PURPOSES, coverage, sha256Hex, saveBlob,
} from './ui.js';

// ---- Overview ----

export function overview(root, { session }) {
  const tiles = h('div', { class: 'tiles', 'data-testid': 'overview-tiles' });
  const rates = h('div', { class: 'charts' });
  root.append(
    h('h1', {}, t('nav.overview')),
    h('p', { 'data-testid': 'whoami' }, t('overview.signed_in_as', { name: '' }), raw(session.name), ' · ', session.roles.map((role) => t(`role.${role}`)).join(', ')),
    tiles, rates,
  );
  api('GET', '/v1/overview').then((o) => {
    const behind = Math.max(0, o.durable_seq - o.indexed_seq);
    tiles.replaceChildren(
      h('div', { class: 'tile' }, h('span', { class: 'big', 'data-testid': 'people' }, fmtNumber(o.people)), h('span', {}, t('overview.people'))),
      h('div', { class: 'tile' }, h('span', { class: 'big' }, fmtNumber(behind)), h('span', {}, t('overview.index_behind'))),
      h('div', { class: 'tile' }, h('span', { class: 'big' }, fmtNumber(Math.round(o.sources.reduce((sum, r) => sum + r.events_per_second, 0) * 10) / 10)), h('span', {}, t('overview.events_per_second'))),
      ...(o.refreshed_at ? [h('div', { class: 'tile' }, h('span', {}, fmtDate(o.refreshed_at)), h('span', {}, t('overview.refreshed')))] : []),
    );
    const channels = {};
    for (const r of o.sources) channels[r.channel] = (channels[r.channel] || 0) + r.last_hour;
    rates.append(
      h('div', { 'data-testid': 'channel-chart' }, barChart(t('overview.by_channel'), Object.entries(channels).map(([c, n]) => ({ label: t(`channel.${c}`), value: n, display: fmtNumber(n) })))),
      h('div', {}, h('h3', {}, t('overview.by_source')), table([t('recipient.name'), t('field.channel'), t('overview.events_per_second'), t('overview.last_hour')],
        o.sources.map((r) => [raw(r.name), t(`channel.${r.channel}`), fmtNumber(Math.round(r.events_per_second * 100) / 100), fmtNumber(r.last_hour)]),
        { 'data-testid': 'source-rates' })),
    );
  }).catch((error) => tiles.replaceChildren(errorBox(error)));
  if (has(session, COUNT_ROLES) && session.allowed_purposes.length) {
    const picker = purposePicker(session, 'analytics');
    const box = h('div', { class: 'charts' });
    const coverageBox = h('div', { class: 'charts' });
    picker.addEventListener('change', () => { charts(box, '', picker.value, ['tier', 'lifecycle', 'channel']); coverage(coverageBox, picker.value); });
    root.append(h('section', {}, h('h2', {}, t('overview.customers')), h('label', {}, t('common.purpose'), ' ', picker), box, coverageBox));
    charts(box, '', picker.value, ['tier', 'lifecycle', 'channel']);
    coverage(coverageBox, picker.value);
  }
  if (has(session, REQUEST_ROLES)) {
    const box = h('section', { 'data-testid': 'requests-due' }, h('h2', {}, t('overview.requests_due')));
    root.append(box);
    api('GET', '/v1/requests')
      .then((answer) => {
        const now = Date.now();
        const open = answer.requests.filter((r) => !r.completed_at);
        const overdue = open.filter((r) => Date.parse(r.due_at) < now).length;
        const soon = open.filter((r) => Date.parse(r.due_at) >= now && Date.parse(r.due_at) - now < 7 * 86400e3).length;
        box.append(h('p', {}, t('overview.overdue', { n: fmtNumber(overdue) }), ' · ', t('overview.due_soon', { n: fmtNumber(soon) })));
      })
      .catch((error) => box.append(errorBox(error)));
  }
}

// ---- Audience builder ----

function fieldsFor(session) {
  const fields = [
    { name: 'tier', kind: 'enum', values: TIERS },
    { name: 'lifecycle', kind: 'enum', values: LIFECYCLE },
    { name: 'channel', kind: 'enum', values: CHANNELS },
    { name: 'city', kind: 'text' },
    { name: 'region', kind: 'text' },
    { name: 'interest', kind: 'text' },
    { name: 'tag', kind: 'text' },
    { name: 'rfm_score', kind: 'number' },
    { name: 'orders_total', kind: 'number' },
    { name: 'monetary_90d', kind: 'number' },
    { name: 'frequency_365d', kind: 'number' },
    { name: 'recency_days', kind: 'number' },
    { name: 'churn_risk', kind: 'number' },
    { name: 'clv_predicted', kind: 'number' },
  ];
  for (const purpose of session.allowed_purposes) {
    fields.push({ name: `consent.${purpose.replaceAll('.', '_')}`, kind: 'enum', values: ['granted', 'denied', 'withdrawn'], purpose });
  }
  return fields;
}

function fieldLabel(field) {
  return field.purpose ? t('field.consent', { purpose: t(`purpose.${field.purpose}`) }) : t(`field.${field.name}`);
}

function quote(value) {
  return /^[\p{L}\p{N}_.-]+$/u.test(value) ? value : `"${value.replaceAll('"', '')}"`;
}

function clauseText(field, op, value) {
  if (!value) return '';
  return field.kind === 'number' ? `${field.name}${op}${Number(value)}` : `${field.name}:${quote(value)}`;
}

export function audiences(root, { session }) {
  const fields = fieldsFor(session);
  const picker = purposePicker(session, 'marketing.email');
  const clauses = h('div', { class: 'clauses', 'data-testid': 'clauses' });
  const text = h('textarea', { name: 'query', rows: 3, 'data-testid': 'query', spellcheck: 'false' });
  const result = h('div', { class: 'result', 'data-testid': 'count-result' });
  const chartBox = h('div', { class: 'charts' });
  const saved = h('div', { 'data-testid': 'saved-audiences' });
  let timer = null;

  const rebuildText = () => {
    text.value = [...clauses.querySelectorAll('.clause')]
      .map((row) => row.clauseText())
      .filter(Boolean)
      .join(' AND ');
    schedule();
  };
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(count, 250);
  };
  const count = async () => {
    result.replaceChildren(h('p', { class: 'muted' }, t('common.loading')));
    try {
      const answer = await api('POST', '/v1/audiences/count', { query: text.value || 'tier:*', purpose: picker.value });
      result.replaceChildren(
        h('p', { class: 'big', 'data-testid': 'count' }, display(answer.count)),
        h('p', {}, t('audience.matched', { n: display(answer.matched) }), ' · ',
          h('span', { 'data-testid': 'removed' }, t('audience.removed_by_policy', { n: display(answer.removed_by_policy) }))),
      );
      charts(chartBox, text.value || 'tier:*', picker.value);
    } catch (error) {
      result.replaceChildren(errorBox(error));
      chartBox.replaceChildren();
    }
  };

  const addClause = () => {
    const fieldSelect = h('select', { 'data-testid': 'clause-field' }, fields.map((f) => h('option', { value: f.name }, fieldLabel(f))));
    const opSelect = h('select', { 'data-testid': 'clause-op' });
    const valueBox = h('span');
    const row = h('div', { class: 'clause' }, fieldSelect, opSelect, valueBox,
      h('button', { type: 'button', class: 'link', onclick: () => { row.remove(); rebuildText(); } }, t('audience.remove_clause')));
    let valueInput;
    const setField = () => {
      const field = fields.find((f) => f.name === fieldSelect.value);
      opSelect.replaceChildren(...(field.kind === 'number' ? ['>=', '<=', '>', '<', '='] : [':']).map((op) => h('option', { value: op }, op === ':' ? t('audience.is') : op)));
      valueInput = field.kind === 'enum'
        ? h('select', { 'data-testid': 'clause-value' }, field.values.map((v) => h('option', { value: v }, t(`${field.purpose ? 'consent' : field.name}.${v}`))))
        : h('input', { type: field.kind === 'number' ? 'number' : 'text', 'data-testid': 'clause-value', step: 'any' });
      valueInput.addEventListener('change', rebuildText);
      valueInput.addEventListener('input', rebuildText);
      valueBox.replaceChildren(valueInput);
      row.clauseText = () => clauseText(field, opSelect.value, valueInput.value);
      rebuildText();
    };
    fieldSelect.addEventListener('change', setField);
    opSelect.addEventListener('change', rebuildText);
    clauses.append(row);
    setField();
  };

  const name = h('input', { name: 'name', 'data-testid': 'audience-name', placeholder: t('audience.name') });
  const saveMessage = h('span', { 'data-testid': 'save-message' });
  const save = async () => {
    try {
      const answer = await api('POST', '/v1/audiences', { name: name.value, purpose: picker.value, query: text.value || 'tier:*' });
      saveMessage.replaceChildren(t('audience.saved'), ' ', raw(answer.name));
      listSaved();
    } catch (error) {
      saveMessage.replaceChildren(errorBox(error));
    }
  };
  const listSaved = async () => {
    try {
      const answer = await api('GET', '/v1/audiences');
      saved.replaceChildren(table(
        [t('audience.name'), t('common.purpose'), t('audience.query'), t('common.created_by'), ''],
        answer.audiences.map((a) => [raw(a.name), t(`purpose.${a.purpose}`), code(a.query || jsonText(a.condition)), raw(a.created_by),
          h('span', {},
            h('button', { type: 'button', class: 'link', onclick: () => { text.value = a.query || ''; picker.value = a.purpose; count(); } }, t('audience.open')),
            has(session, BUILD_ROLES) ? h('button', { type: 'button', class: 'link', 'data-testid': 'delete-audience', onclick: async () => {
              if (!window.confirm(t('audience.confirm_delete'))) return;
              try { await api('DELETE', `/v1/audiences/${encodeURIComponent(a.id)}`); listSaved(); } catch (error) { saved.replaceChildren(errorBox(error)); }
            } }, t('audience.delete')) : null)]),
        { 'data-testid': 'saved-table' },
      ));
    } catch (error) {
      saved.replaceChildren(errorBox(error));
    }
  };

  text.addEventListener('input', schedule);
  picker.addEventListener('change', schedule);
  root.append(
    h('h1', {}, t('nav.audiences')),
    h('div', { class: 'builder' },
      h('section', {},
        h('label', {}, t('common.purpose'), ' ', picker),
        h('h2', {}, t('audience.clauses')), clauses,
        h('button', { type: 'button', onclick: addClause, 'data-testid': 'add-clause' }, t('audience.add_clause')),
        h('h2', {}, t('audience.text_query')), text),
      h('section', {}, h('h2', {}, t('audience.size')), result, chartBox)),
    ...(has(session, BUILD_ROLES)
      ? [h('section', {}, h('h2', {}, t('audience.save')), name, ' ', h('button', { type: 'button', onclick: save, 'data-testid': 'save-audience' }, t('common.save')), ' ', saveMessage)]
      : []),
    h('section', {}, h('h2', {}, t('audience.saved_list')), saved),
  );
  addClause();
  listSaved();
}

