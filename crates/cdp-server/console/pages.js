// The console's pages. Each declares the roles that may open it (the same table the API
// enforces: crates/cdp-server/src/permissions.rs) and renders into `root`; the API refuses
// whatever a role may not do, whatever the page shows.

import { api } from './api.js';
import { h } from './dom.js';
import { t, fmtNumber, fmtDate } from './i18n.js';
import { barChart, funnelChart, heatMap, identityGraph } from './charts.js';

const COUNT_ROLES = ['admin', 'dpo', 'marketer', 'analyst'];
const BUILD_ROLES = ['admin', 'dpo', 'marketer'];
const PROFILE_ROLES = ['admin', 'dpo', 'marketer', 'customer_service'];
const GRAPH_ROLES = ['admin', 'dpo'];
const REQUEST_ROLES = ['admin', 'dpo', 'auditor'];
const HANDLE_ROLES = ['admin', 'dpo'];
const AUDIT_ROLES = ['admin', 'dpo', 'auditor'];

const TIERS = ['vip', 'high_potential', 'ordinary', 'churn_warning'];
const LIFECYCLE = ['acquisition', 'growth', 'maturity', 'decline', 'churned'];
const CHANNELS = ['web', 'ios', 'android', 'mini_program', 'crm', 'pos', 'customer_service', 'social', 'email', 'sms'];
const IDENTIFIER_TYPES = ['email', 'phone', 'user_id', 'anonymous_id', 'wechat_openid', 'wechat_unionid', 'alipay_user_id', 'member_id', 'crm_id', 'device_id', 'advertising_id'];
const REQUEST_TYPES = ['access', 'erasure', 'rectification', 'restriction', 'objection'];

const has = (session, roles) => session.roles.some((role) => roles.includes(role));

// Data shown as it is (names people typed, ids, queries, audit actions): marked, so that a
// test can tell labels, which must be translated, from data, which must not be.
const raw = (value) => h('span', { 'data-raw': true }, value);
const code = (value) => h('code', {}, value);

function display(value) {
  return typeof value === 'number' ? fmtNumber(value) : String(value);
}

function errorBox(error) {
  const text = error && error.code ? t(`error.${error.code}`, { message: error.message }) : String(error);
  return h('p', { class: 'error', role: 'alert', 'data-testid': 'error' }, text);
}

function purposePicker(session, preferred) {
  const purposes = session.allowed_purposes;
  const chosen = purposes.includes(preferred) ? preferred : purposes[0];
  return h(
    'select',
    { name: 'purpose', 'data-testid': 'purpose', required: true },
    purposes.map((purpose) => h('option', { value: purpose, selected: purpose === chosen }, t(`purpose.${purpose}`))),
  );
}

function table(headers, rows, attrs = {}) {
  return h(
    'table',
    attrs,
    h('thead', {}, h('tr', {}, headers.map((header) => h('th', {}, header)))),
    h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((cell) => h('td', {}, cell))))),
  );
}

function jsonText(value) {
  if (value === null || value === undefined) return '';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

// The charts of an audience: one breakdown request (one audit entry) gives the members the
// policies allow per tier, lifecycle stage, channel and city, and on the RFM grid; counts
// below the minimum audience size come back withheld and are drawn as such.
async function charts(container, query, purpose, dimensions = ['tier', 'lifecycle', 'channel', 'city', 'rfm']) {
  container.replaceChildren(h('p', { class: 'muted' }, t('common.loading')));
  try {
    const answer = await api('POST', '/v1/audiences/breakdown', { query: query.trim() || 'tier:*', purpose, dimensions });
    const withheld = `<${answer.suppressed_below}`;
    const bars = (field, buckets, label) => (buckets || []).map((b) => ({
      label: label ? label(b.value) : t(`${field}.${b.value}`),
      value: typeof b.people === 'number' ? b.people : 0,
      display: typeof b.people === 'number' ? fmtNumber(b.people) : withheld,
    }));
    const parts = [];
    if (answer.tier) parts.push(h('div', { 'data-testid': 'tier-chart' }, barChart(t('chart.tiers'), bars('tier', answer.tier))));
    if (answer.lifecycle) parts.push(h('div', { 'data-testid': 'lifecycle-chart' }, funnelChart(t('chart.lifecycle'), bars('lifecycle', answer.lifecycle))));
    if (answer.channel && answer.channel.length) parts.push(h('div', { 'data-testid': 'channel-chart' }, barChart(t('chart.channels'), bars('channel', answer.channel))));
    if (answer.city && answer.city.length) parts.push(h('div', { 'data-testid': 'city-chart' }, barChart(t('chart.cities'), bars('city', answer.city, (v) => v))));
    if (answer.rfm) {
      parts.push(h('div', { 'data-testid': 'rfm-chart' }, heatMap(t('chart.rfm'), answer.rfm,
        { withheld, format: (n) => fmtNumber(n), axes: t('chart.rfm_axes') })));
    }
    container.replaceChildren(...parts);
  } catch (error) {
    container.replaceChildren(errorBox(error));
  }
}

// ---- Overview ----

const COVERAGE_PURPOSES = ['analytics', 'personalization', 'marketing', 'marketing.email', 'marketing.sms', 'marketing.push'];

// Consent coverage: of everyone indexed, how many granted each purpose (matched counts,
// before the policies filter; each one an audited count).
async function coverage(box, purpose) {
  try {
    const everyone = await api('POST', '/v1/audiences/count', { query: 'tier:*', purpose });
    const answers = await Promise.all(COVERAGE_PURPOSES.map((p) =>
      api('POST', '/v1/audiences/count', { query: `consent.${p.replaceAll('.', '_')}:granted`, purpose })));
    const total = typeof everyone.matched === 'number' ? everyone.matched : 0;
    box.replaceChildren(h('div', { 'data-testid': 'coverage-chart' }, barChart(t('overview.coverage'), COVERAGE_PURPOSES.map((p, i) => {
      const matched = answers[i].matched;
      const share = typeof matched === 'number' && total > 0 ? matched / total : 0;
      return { label: t(`purpose.${p}`), value: share, display: typeof matched === 'number' ? `${fmtNumber(Math.round(share * 100))} %` : display(matched) };
    }), { labelWidth: 150 })));
  } catch (error) {
    box.replaceChildren(errorBox(error));
  }
}

function overview(root, { session }) {
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
      o.refreshed_at ? h('div', { class: 'tile' }, h('span', {}, fmtDate(o.refreshed_at)), h('span', {}, t('overview.refreshed'))) : null,
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

function audiences(root, { session }) {
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
    has(session, BUILD_ROLES)
      ? h('section', {}, h('h2', {}, t('audience.save')), name, ' ', h('button', { type: 'button', onclick: save, 'data-testid': 'save-audience' }, t('common.save')), ' ', saveMessage)
      : null,
    h('section', {}, h('h2', {}, t('audience.saved_list')), saved),
  );
  addClause();
  listSaved();
}

// ---- Profile lookup ----

// Traits with their provenance: each is `{value, channel, source_id, at}` as the read shows it
// (masked where the policy says); computed traits are plain values.
function kvTable(object, testid) {
  const rows = Object.entries(object || {}).map(([key, entry]) => {
    const traced = entry && typeof entry === 'object' && !Array.isArray(entry) && 'value' in entry;
    const value = traced ? entry.value : entry;
    return [code(key), raw(jsonText(value)),
      traced && entry.channel ? t(`channel.${entry.channel}`) : '',
      traced && entry.source_id ? code(entry.source_id) : '',
      traced && entry.at ? fmtDate(entry.at) : ''];
  });
  return table([t('common.field'), t('common.value'), t('profile.channel'), t('profile.source'), t('profile.updated')], rows, { 'data-testid': testid });
}

function profiles(root, { session }) {
  const picker = purposePicker(session, 'customer_service');
  const kind = h('select', { name: 'type', 'data-testid': 'lookup-type' }, IDENTIFIER_TYPES.map((v) => h('option', { value: v }, t(`identifier.${v}`))));
  const value = h('input', { name: 'value', 'data-testid': 'lookup-value', autocomplete: 'off', required: true });
  const region = h('input', { name: 'region', size: 3, placeholder: 'CN', 'data-testid': 'lookup-region' });
  const out = h('div', { 'data-testid': 'profile' });
  const form = h('form', { class: 'inline' },
    h('label', {}, t('common.purpose'), ' ', picker), ' ',
    h('label', {}, t('profile.identifier'), ' ', kind), ' ', value, ' ', region, ' ',
    h('button', { type: 'submit', 'data-testid': 'lookup' }, t('profile.look_up')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    out.replaceChildren(h('p', { class: 'muted' }, t('common.loading')));
    const purpose = picker.value;
    try {
      const profile = await api('POST', '/v1/profiles/lookup', { type: kind.value, value: value.value, region: region.value || undefined, purpose });
      // The value typed is not kept on the page once answered.
      value.value = '';
      showProfile(out, session, profile, purpose);
    } catch (error) {
      out.replaceChildren(error.status === 404 ? h('p', { 'data-testid': 'not-found' }, t('profile.not_found')) : errorBox(error));
    }
  });
  root.append(h('h1', {}, t('nav.profiles')), form, out);
}

function showProfile(out, session, profile, purpose) {
  const identifiers = profile.identifiers || [];
  const sections = [
    h('h2', {}, t('profile.profile'), ' ', h('code', {}, profile.id)),
    h('p', { class: 'muted' }, t('profile.policy_note', { purpose: t(`purpose.${purpose}`) }),
      ' ', code(Object.entries((profile.policy && profile.policy.obligations) || {}).map(([field, how]) => `${field}: ${how}`).join(', '))),
    h('h3', {}, t('profile.identifiers')),
    table([t('common.type'), t('common.value'), t('profile.channel'), t('profile.last_seen')],
      identifiers.map((i) => [t(`identifier.${i.type}`), code(i.value), i.channel ? t(`channel.${i.channel}`) : '', i.last_seen ? fmtDate(i.last_seen) : '']),
      { 'data-testid': 'identifiers' }),
  ];
  if (profile.traits) sections.push(h('h3', {}, t('profile.traits')), kvTable(profile.traits, 'traits'));
  if (profile.computed) sections.push(h('h3', {}, t('profile.computed')), kvTable(profile.computed, 'computed'), h('p', { class: 'muted' }, t('profile.computed_explained')));
  const graphBox = h('div');
  const consentBox = h('div');
  const eventBox = h('div');
  sections.push(graphBox, consentBox, eventBox);
  out.replaceChildren(...sections);
  const id = encodeURIComponent(profile.id);
  const p = encodeURIComponent(purpose);
  if (has(session, GRAPH_ROLES)) {
    api('GET', `/v1/profiles/${id}/identity?purpose=${p}`)
      .then((graph) => {
        const nodes = (graph.identifiers || []).map((i) => ({ type: t(`identifier.${i.type}`), value: i.value }));
        const splitMessage = h('div', { 'data-testid': 'split-message' });
        const split = async (edge) => {
          if (!window.confirm(t('profile.confirm_split'))) return;
          try {
            const report = await api('POST', `/v1/profiles/${id}/split`, { edge });
            splitMessage.replaceChildren(h('p', { class: 'ok' }, t('profile.split_done'), ' ', (report.profiles || []).map((p) => [code(p), ' '])));
          } catch (error) {
            splitMessage.replaceChildren(errorBox(error));
          }
        };
        graphBox.replaceChildren(
          h('div', { 'data-testid': 'identity-graph' }, identityGraph(t('profile.graph'), t('profile.person'), nodes)),
          h('h3', {}, t('profile.links')),
          table([t('profile.first_seen'), t('profile.channel'), t('profile.source'), t('profile.identifiers'), ''],
            (graph.edges || []).map((edge) => [
              edge.first && edge.first.at ? fmtDate(edge.first.at) : '',
              edge.first && edge.first.channel ? t(`channel.${edge.first.channel}`) : '',
              edge.first ? code(edge.first.source_id || '') : '',
              h('span', {}, (edge.identifiers || []).map((i) => h('span', { class: 'chip' }, t(`identifier.${i.type}`), ' ', code(i.value), ' ', t(`link.${i.status}`)))),
              (edge.identifiers || []).length > 1
                ? h('button', { type: 'button', class: 'link', 'data-testid': 'split-edge', onclick: () => split(edge.id) }, t('profile.split'))
                : '',
            ]), { 'data-testid': 'evidence' }),
          splitMessage);
      })
      .catch((error) => graphBox.replaceChildren(errorBox(error)));
    api('GET', `/v1/profiles/${id}/events?purpose=${p}&limit=50`)
      .then((answer) => eventBox.replaceChildren(h('h3', {}, t('profile.events')),
        table([t('common.time'), t('common.type'), t('profile.event')],
          (answer.events || []).map((e) => [e.timestamp ? fmtDate(e.timestamp) : '', code(e.type || ''), raw(e.event || e.name || '')]),
          { 'data-testid': 'events' })))
      .catch((error) => eventBox.replaceChildren(errorBox(error)));
  }
  api('GET', `/v1/profiles/${id}/consents?purpose=${p}`)
    .then((answer) => consentBox.replaceChildren(h('h3', {}, t('profile.consents')),
      table([t('common.purpose'), t('consent.state')],
        (answer.current || []).map((c) => [t(`purpose.${c.purpose}`), t(`consent.${c.state}`)]),
        { 'data-testid': 'consents' }),
      h('h3', {}, t('profile.consent_history')),
      h('ol', { class: 'timeline', 'data-testid': 'consent-history' }, (answer.history || []).map((r) =>
        h('li', {}, fmtDate(r.at || r.recorded_at), ' · ', t(`purpose.${r.purpose}`), ' · ', t(`consent.${r.status}`),
          r.source ? [' · ', code(r.source)] : null)))))
    .catch((error) => consentBox.replaceChildren(errorBox(error)));
}

// ---- Exports ----

const EXPORT_FIELDS = ['pseudonym', 'identifiers.email', 'identifiers.phone', 'email_sha256_google', 'email_sha256_meta',
  'phone_sha256_google', 'phone_sha256_meta', 'traits.name', 'age_band', 'region', 'city', 'tier', 'lifecycle', 'rfm_score'];
const EXPORT_ROLES = ['admin', 'dpo', 'marketer'];

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest('SHA-256', buffer);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = h('a', { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// One export: progress while it runs; when done the signed manifest (counts, removals and
// their reasons, each field's transform), the download, and the file checked against the
// manifest's SHA-256 in the browser.
function exportView(box, session, id) {
  const progress = h('progress', { max: 1, value: 0, 'data-testid': 'export-progress' });
  const status = h('p', { 'data-testid': 'export-status' });
  const detail = h('div');
  box.replaceChildren(h('h2', {}, t('export.job'), ' ', code(id)), status, progress, detail);
  let stopped = false;
  const poll = async () => {
    if (stopped || !box.isConnected) return;
    try {
      const job = await api('GET', `/v1/exports/${encodeURIComponent(id)}`);
      const total = job.progress ? job.progress.total : 0;
      progress.max = Math.max(total, 1);
      progress.value = job.progress ? job.progress.considered : 0;
      status.replaceChildren(t(`export.status.${job.status}`), ...(job.reason ? [' · ', raw(job.reason)] : []));
      if (job.status === 'running') {
        setTimeout(poll, 400);
        return;
      }
      stopped = true;
      progress.value = progress.max;
      detail.replaceChildren(...manifestView(session, job));
    } catch (error) {
      detail.replaceChildren(errorBox(error));
    }
  };
  poll();
}

function manifestView(session, job) {
  const parts = [];
  const counts = (job.manifest && job.manifest.counts) || job.counts;
  if (counts) {
    parts.push(h('h3', {}, t('export.counts')), table([t('export.count'), t('common.value')],
      Object.entries(counts).filter(([, v]) => typeof v === 'number').map(([k, v]) => [t(`export.counts.${k}`), fmtNumber(v)]), { 'data-testid': 'export-counts' }));
    // Why people were left out: the rule, how many, what it says and its articles.
    if (counts.exclusions && counts.exclusions.length) {
      parts.push(h('h3', {}, t('export.exclusions')), table([t('export.reason'), t('export.count'), t('export.why'), t('export.cite')],
        counts.exclusions.map((e) => [code(e.reason), fmtNumber(e.people), raw(e.why), code((e.cite || []).join('; '))]),
        { 'data-testid': 'export-exclusions' }));
    }
  }
  const manifest = job.manifest;
  if (!manifest) return parts;
  parts.push(
    h('h3', {}, t('export.fields')),
    table([t('common.field'), t('export.transform')], manifest.fields.map((f) => [code(f.field), code(f.transform)]), { 'data-testid': 'export-fields' }),
    h('p', {}, t('export.recipient'), ' ', raw(manifest.recipient.name), ' · ', t('common.purpose'), ' ', t(`purpose.${manifest.purpose}`),
      ' · ', t('export.expires'), ' ', fmtDate(manifest.expires_at)),
    h('p', { class: 'muted' }, t('export.signed_by'), ' ', code(manifest.signing_key)),
  );
  if (has(session, EXPORT_ROLES) && job.status === 'done') {
    const verdict = h('p', { 'data-testid': 'export-verdict' });
    const download = async () => {
      try {
        const response = await fetch(`/v1/exports/${encodeURIComponent(job.id)}/file`, { credentials: 'same-origin' });
        if (!response.ok) throw new Error(String(response.status));
        const bytes = await response.arrayBuffer();
        saveBlob(new Blob([bytes]), `${job.id}.${job.format}`);
        saveBlob(new Blob([JSON.stringify(manifest, null, 2)], { type: 'application/json' }), `${job.id}.manifest.json`);
        if (!window.crypto || !crypto.subtle) {
          verdict.replaceChildren(t('export.verify_needs_https'));
          return;
        }
        const digest = await sha256Hex(bytes);
        const ok = digest === manifest.file_sha256 && bytes.byteLength === manifest.file_bytes;
        verdict.className = ok ? 'ok' : 'error';
        verdict.replaceChildren(ok ? t('export.verified') : t('export.mismatch'), ' ', code(digest));
      } catch (error) {
        verdict.replaceChildren(errorBox(error));
      }
    };
    parts.push(
      h('button', { type: 'button', onclick: download, 'data-testid': 'export-download' }, t('export.download')), verdict,
      h('p', { class: 'muted' }, t('export.cli_verify'), ' ', code(`cdp export verify ${job.id}.manifest.json ${job.id}.${job.format} --server ${window.location.origin}`)),
    );
  }
  return parts;
}

function exportsPage(root, { session }) {
  const current = h('section', { 'data-testid': 'export-job' });
  const list = h('div', { 'data-testid': 'export-list' });
  const load = async () => {
    try {
      const answer = await api('GET', '/v1/exports');
      list.replaceChildren(table([t('common.id'), t('export.status'), t('common.purpose'), t('common.created_by'), t('common.time'), ''],
        answer.exports.map((job) => [code(job.id), t(`export.status.${job.status}`), t(`purpose.${job.purpose}`), raw(job.created_by), fmtDate(job.created_at),
          h('button', { type: 'button', class: 'link', onclick: () => exportView(current, session, job.id) }, t('audience.open'))]),
        { 'data-testid': 'exports-table' }));
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  };
  root.append(h('h1', {}, t('nav.exports')));
  if (has(session, EXPORT_ROLES)) {
    const audience = h('select', { 'data-testid': 'export-audience', required: true });
    const recipient = h('select', { 'data-testid': 'export-recipient', required: true });
    const picker = purposePicker(session, 'marketing.email');
    const format = h('select', { 'data-testid': 'export-format' }, ['csv', 'jsonl'].map((f) => h('option', { value: f }, f.toUpperCase())));
    const fields = h('div', { class: 'fields', 'data-testid': 'export-fields-picker' }, EXPORT_FIELDS.map((field) =>
      h('label', {}, h('input', { type: 'checkbox', value: field, checked: field === 'pseudonym' }), t(`export.field.${field}`))));
    const message = h('div');
    Promise.all([api('GET', '/v1/audiences'), api('GET', '/v1/recipients')]).then(([audiences, recipients]) => {
      audience.replaceChildren(...audiences.audiences.map((a) => h('option', { value: a.id }, a.name)));
      const recipientList = Array.isArray(recipients) ? recipients : recipients.recipients || [];
      recipient.replaceChildren(...recipientList.map((r) => h('option', { value: r.id }, r.name)));
    }).catch((error) => message.replaceChildren(errorBox(error)));
    const form = h('form', {},
      h('p', { class: 'inline' }, h('label', {}, t('export.audience'), ' ', audience), ' ', h('label', {}, t('common.purpose'), ' ', picker), ' ',
        h('label', {}, t('export.recipient'), ' ', recipient), ' ', h('label', {}, t('export.format'), ' ', format)),
      h('p', {}, t('export.fields_hint')), fields,
      h('button', { type: 'submit', 'data-testid': 'export-start' }, t('export.start')), message);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const chosen = [...fields.querySelectorAll('input:checked')].map((input) => input.value);
      try {
        const job = await api('POST', '/v1/exports', { audience: audience.value, purpose: picker.value, recipient: recipient.value, fields: chosen, format: format.value });
        message.replaceChildren();
        exportView(current, session, job.id);
        load();
      } catch (error) {
        message.replaceChildren(errorBox(error));
      }
    });
    root.append(h('section', {}, h('h2', {}, t('export.new')), form));
  }
  root.append(current, h('section', {}, h('h2', {}, t('export.recent')), list));
  load();
}

// ---- Sources ----

function sourcesPage(root) {
  const list = h('div', { 'data-testid': 'source-list' });
  const shown = h('div', { 'data-testid': 'write-key-box' });
  const debug = h('section', { 'data-testid': 'debugger' });
  let watching = null;
  const showKey = (source) => shown.replaceChildren(h('p', { class: 'ok' }, t('source.key_once', { name: '' }), raw(source.name)),
    h('p', {}, h('code', { 'data-testid': 'write-key' }, source.write_key)));
  const watch = (source) => {
    watching = source.id;
    const tick = async () => {
      if (watching !== source.id || !debug.isConnected) return;
      try {
        const activity = await api('GET', `/v1/sources/${encodeURIComponent(source.id)}/activity`);
        debug.replaceChildren(
          h('h2', {}, t('source.debugger'), ' ', raw(source.name)),
          h('p', { 'data-testid': 'source-rate' }, t('source.rate', { n: fmtNumber(Math.round(activity.events_per_second * 100) / 100) })),
          activity.per_minute.length ? barChart(t('source.per_minute'), activity.per_minute.slice(-10).map((m) => ({
            label: fmtDate(m.minute), value: m.messages, display: fmtNumber(m.messages) })), { labelWidth: 170 }) : null,
          table([t('common.time'), t('common.type'), t('profile.event')],
            activity.recent.map((m) => [fmtDate(m.at), t(`message.${m.type}`), raw(m.name || '')]), { 'data-testid': 'debugger-table' }));
      } catch (error) {
        debug.replaceChildren(errorBox(error));
      }
      setTimeout(tick, 2000);
    };
    tick();
  };
  const load = async () => {
    try {
      const sources = await api('GET', '/v1/sources');
      list.replaceChildren(table([t('recipient.name'), t('field.channel'), t('common.id'), t('source.state'), ''],
        sources.map((source) => [raw(source.name), t(`channel.${source.channel}`), code(source.id),
          source.revoked_at ? t('source.revoked') : t('source.active'),
          source.revoked_at ? '' : h('span', {},
            h('button', { type: 'button', class: 'link', 'data-testid': `watch-${source.name}`, onclick: () => watch(source) }, t('source.watch')),
            h('button', { type: 'button', class: 'link', 'data-testid': `rotate-${source.name}`, onclick: async () => {
              if (!window.confirm(t('source.confirm_rotate'))) return;
              try { showKey(await api('POST', `/v1/sources/${encodeURIComponent(source.id)}/rotate`)); load(); } catch (error) { shown.replaceChildren(errorBox(error)); }
            } }, t('source.rotate')),
            h('button', { type: 'button', class: 'link', 'data-testid': `revoke-${source.name}`, onclick: async () => {
              if (!window.confirm(t('source.confirm_revoke'))) return;
              try { await api('DELETE', `/v1/sources/${encodeURIComponent(source.id)}`); shown.replaceChildren(); load(); } catch (error) { shown.replaceChildren(errorBox(error)); }
            } }, t('source.revoke')))]),
        { 'data-testid': 'sources-table' }));
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  };
  const name = h('input', { 'data-testid': 'source-name', required: true });
  const channel = h('select', { 'data-testid': 'source-channel' }, CHANNELS.map((c) => h('option', { value: c }, t(`channel.${c}`))));
  const region = h('input', { 'data-testid': 'source-region', size: 3, value: 'CN' });
  const form = h('form', { class: 'inline' }, h('label', {}, t('recipient.name'), ' ', name), ' ', h('label', {}, t('field.channel'), ' ', channel), ' ',
    h('label', {}, t('source.default_region'), ' ', region), ' ', h('button', { type: 'submit', 'data-testid': 'source-create' }, t('source.create')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const source = await api('POST', '/v1/sources', { name: name.value, channel: channel.value, default_region: region.value || undefined });
      name.value = '';
      showKey(source);
      load();
    } catch (error) {
      shown.replaceChildren(errorBox(error));
    }
  });
  root.append(h('h1', {}, t('nav.sources')), h('section', {}, h('h2', {}, t('source.new')), form, shown),
    h('section', {}, h('h2', {}, t('source.list')), list), debug);
  load();
}

// ---- Recipients and suppressions ----

const MANAGE_RECIPIENT_ROLES = ['admin', 'dpo'];

function recipientsPage(root, { session }) {
  const list = h('div', { 'data-testid': 'recipient-list' });
  const load = async () => {
    try {
      const answer = await api('GET', '/v1/recipients');
      const rows = Array.isArray(answer) ? answer : answer.recipients || [];
      list.replaceChildren(table([t('common.id'), t('recipient.name'), t('recipient.role'), t('recipient.region'), t('recipient.transfer'), t('recipient.purposes')],
        rows.map((r) => [code(r.id), raw(r.name), t(`recipient.role.${r.role}`), raw(r.region), raw(r.transfer_mechanism),
          (r.allowed_purposes || []).map((p) => t(`purpose.${p}`)).join(', ')]),
        { 'data-testid': 'recipients-table' }));
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  };
  root.append(h('h1', {}, t('nav.recipients')), h('section', {}, h('h2', {}, t('recipient.list')), list));
  if (has(session, MANAGE_RECIPIENT_ROLES)) {
    const name = h('input', { 'data-testid': 'recipient-name', required: true });
    const contact = h('input', { 'data-testid': 'recipient-contact', required: true, type: 'email' });
    const role = h('select', { 'data-testid': 'recipient-role' }, ['processor', 'controller'].map((r) => h('option', { value: r }, t(`recipient.role.${r}`))));
    const region = h('input', { 'data-testid': 'recipient-region', required: true, size: 3, value: 'CN' });
    const transfer = h('select', { 'data-testid': 'recipient-transfer' }, ['none', 'standard_contract', 'assessment', 'certification', 'adequacy', 'scc']
      .map((m) => h('option', { value: m }, t(`recipient.transfer.${m}`))));
    const purposes = h('div', { class: 'fields' }, session.allowed_purposes.map((p) =>
      h('label', {}, h('input', { type: 'checkbox', value: p }), t(`purpose.${p}`))));
    const message = h('div');
    const form = h('form', {},
      h('p', { class: 'inline' }, h('label', {}, t('recipient.name'), ' ', name), ' ', h('label', {}, t('recipient.contact'), ' ', contact), ' ',
        h('label', {}, t('recipient.role'), ' ', role), ' ', h('label', {}, t('recipient.region'), ' ', region), ' ',
        h('label', {}, t('recipient.transfer'), ' ', transfer)),
      h('p', {}, t('recipient.purposes')), purposes,
      h('button', { type: 'submit', 'data-testid': 'recipient-create' }, t('recipient.create')), message);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      try {
        await api('POST', '/v1/recipients', {
          name: name.value, contact: contact.value, role: role.value, region: region.value.toUpperCase(),
          transfer_mechanism: transfer.value,
          allowed_purposes: [...purposes.querySelectorAll('input:checked')].map((input) => input.value),
        });
        message.replaceChildren(h('p', { class: 'ok' }, t('recipient.created')));
        load();
      } catch (error) {
        message.replaceChildren(errorBox(error));
      }
    });
    const kind = h('select', { 'data-testid': 'suppress-type' }, IDENTIFIER_TYPES.map((v) => h('option', { value: v }, t(`identifier.${v}`))));
    const value = h('input', { 'data-testid': 'suppress-value', autocomplete: 'off', required: true });
    const suppressMessage = h('div');
    const suppressForm = h('form', { class: 'inline' }, kind, ' ', value, ' ',
      h('button', { type: 'submit', 'data-testid': 'suppress' }, t('recipient.suppress')), suppressMessage);
    suppressForm.addEventListener('submit', async (event) => {
      event.preventDefault();
      try {
        await api('POST', '/v1/suppressions', { type: kind.value, value: value.value });
        value.value = '';
        suppressMessage.replaceChildren(h('span', { class: 'ok', 'data-testid': 'suppressed' }, t('recipient.suppressed')));
      } catch (error) {
        suppressMessage.replaceChildren(errorBox(error));
      }
    });
    root.append(h('section', {}, h('h2', {}, t('recipient.new')), form),
      h('section', {}, h('h2', {}, t('recipient.suppressions')), h('p', { class: 'muted' }, t('recipient.suppress_hint')), suppressForm));
  }
  load();
}

// ---- Policies ----

function decisionView(decision) {
  return h('div', { 'data-testid': 'decision' },
    h('p', { class: decision.decision === 'allow' ? 'ok big' : 'error big' }, t(`decision.${decision.decision}`)),
    h('p', {}, t('policy.jurisdictions'), ' ', code((decision.jurisdictions || []).join(', ')), ' · ', t('policy.version'), ' ', code(decision.policy_version)),
    table([t('audit.rules'), t('policy.effect'), t('export.why'), t('export.cite')],
      (decision.reasons || []).map((r) => [code(r.rule), code(r.effect), raw(r.message), code((r.cite || []).join('; '))]),
      { 'data-testid': 'decision-reasons' }),
    Object.keys(decision.obligations || {}).length
      ? [h('h3', {}, t('policy.obligations')), table([t('common.field'), t('export.transform')],
        Object.entries(decision.obligations).map(([field, how]) => [code(field), code(jsonText(how))]))]
      : null);
}

function policiesPage(root, { session }) {
  const info = h('p', { 'data-testid': 'policy-version' });
  const result = h('div');
  const ropa = h('pre', { class: 'ropa', 'data-testid': 'ropa', 'data-raw': true });
  root.append(h('h1', {}, t('nav.policies')), info);
  api('GET', '/v1/policies').then((policies) => {
    info.replaceChildren(t('policy.version'), ' ', code(policies.version), ' · ', t('policy.jurisdictions'), ' ',
      code((policies.jurisdictions || []).map((j) => (typeof j === 'string' ? j : j.jurisdiction || j.name)).join(', ')));
    if (!has(session, HANDLE_ROLES)) return;
    const purposes = Object.keys(policies.taxonomy.purposes);
    const action = h('select', { 'data-testid': 'policy-action' }, ['read', 'audience', 'export', 'publish'].map((a) => h('option', { value: a }, t(`policy.action.${a}`))));
    const purpose = h('select', { 'data-testid': 'policy-purpose' }, purposes.map((p) => h('option', { value: p }, t(`purpose.${p}`))));
    const residency = h('input', { 'data-testid': 'policy-residency', size: 3, value: 'CN' });
    const age = h('input', { 'data-testid': 'policy-age', type: 'number', min: 0, max: 130, value: 30 });
    const consent = h('select', { 'data-testid': 'policy-consent' }, ['none', 'granted', 'denied', 'withdrawn'].map((c) => h('option', { value: c }, t(`consent.${c}`))));
    const restricted = h('input', { type: 'checkbox', 'data-testid': 'policy-restricted' });
    const form = h('form', {},
      h('p', { class: 'inline' }, h('label', {}, t('policy.action'), ' ', action), ' ', h('label', {}, t('common.purpose'), ' ', purpose)),
      h('p', { class: 'inline' }, h('label', {}, t('policy.residency'), ' ', residency), ' ', h('label', {}, t('policy.age'), ' ', age), ' ',
        h('label', {}, t('policy.consent'), ' ', consent), ' ', h('label', {}, restricted, t('policy.restricted'))),
      h('button', { type: 'submit', 'data-testid': 'policy-evaluate' }, t('policy.evaluate')));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const subject = { residency: residency.value.toUpperCase(), age: Number(age.value), restricted: restricted.checked, consents: [] };
      if (consent.value !== 'none') subject.consents.push({ purpose: purpose.value, status: consent.value });
      try {
        const decision = await api('POST', '/v1/policies/evaluate', { action: action.value, purpose: purpose.value, subject });
        result.replaceChildren(decisionView(decision.decision));
      } catch (error) {
        result.replaceChildren(errorBox(error));
      }
    });
    info.after(h('section', {}, h('h2', {}, t('policy.dry_run')), form, result));
  }).catch((error) => info.replaceChildren(errorBox(error)));
  const loadRopa = async () => {
    try {
      const answer = await api('GET', '/v1/policies/ropa');
      ropa.replaceChildren(answer.markdown);
    } catch (error) {
      ropa.replaceChildren(errorBox(error));
    }
  };
  root.append(h('section', {}, h('h2', {}, t('policy.ropa')), h('p', { class: 'muted' }, t('policy.ropa_hint')),
    h('button', { type: 'button', onclick: loadRopa, 'data-testid': 'ropa-load' }, t('policy.ropa_show')), ropa));
}

// ---- Consents ----

const CONSENT_ROLES = ['admin', 'dpo', 'customer_service'];

function consentsPage(root, { session }) {
  root.append(h('h1', {}, t('nav.consents')));
  if (has(session, COUNT_ROLES) && session.allowed_purposes.length) {
    const picker = purposePicker(session, 'analytics');
    const box = h('div', { class: 'charts' });
    picker.addEventListener('change', () => coverage(box, picker.value));
    root.append(h('section', {}, h('h2', {}, t('consent.coverage')), h('label', {}, t('common.purpose'), ' ', picker), box));
    coverage(box, picker.value);
  }
  if (!has(session, CONSENT_ROLES)) return;
  const kind = h('select', { 'data-testid': 'consent-subject-type' }, IDENTIFIER_TYPES.map((v) => h('option', { value: v }, t(`identifier.${v}`))));
  const value = h('input', { 'data-testid': 'consent-subject-value', autocomplete: 'off', required: true });
  const region = h('input', { size: 3, value: 'CN', 'data-testid': 'consent-region' });
  const purpose = h('select', { 'data-testid': 'consent-purpose' }, COVERAGE_PURPOSES.map((p) => h('option', { value: p }, t(`purpose.${p}`))));
  const status = h('select', { 'data-testid': 'consent-status' }, ['granted', 'denied', 'withdrawn'].map((c) => h('option', { value: c }, t(`consent.${c}`))));
  const notice = h('input', { 'data-testid': 'consent-notice', placeholder: '2026-01', size: 8 });
  const where = h('input', { 'data-testid': 'consent-source', required: true, value: t('consent.default_source') });
  const evidence = h('input', { 'data-testid': 'consent-evidence', required: true, placeholder: t('consent.evidence_hint') });
  const message = h('div', { 'data-testid': 'consent-message' });
  const form = h('form', {},
    h('p', { class: 'inline' }, h('label', {}, t('profile.identifier'), ' ', kind), ' ', value, ' ', region),
    h('p', { class: 'inline' }, h('label', {}, t('common.purpose'), ' ', purpose), ' ', h('label', {}, t('consent.state'), ' ', status), ' ',
      h('label', {}, t('consent.notice'), ' ', notice)),
    h('p', { class: 'inline' }, h('label', {}, t('consent.source'), ' ', where), ' ', h('label', {}, t('consent.evidence'), ' ', evidence)),
    h('button', { type: 'submit', 'data-testid': 'consent-record' }, t('consent.record')), message);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const answer = await api('POST', '/v1/consents', {
        subject: { type: kind.value, value: value.value, region: region.value || undefined },
        purpose: purpose.value, status: status.value, notice_version: notice.value || undefined,
        source: where.value, channel: 'customer_service', evidence: { note: evidence.value, recorded_in: 'console' },
      });
      value.value = '';
      message.replaceChildren(h('p', { class: 'ok', 'data-testid': 'consent-recorded' }, t('consent.recorded', { state: t(`consent.${answer.state}`) })));
    } catch (error) {
      message.replaceChildren(error.status === 404 ? h('p', { class: 'error' }, t('profile.not_found')) : errorBox(error));
    }
  });
  root.append(h('section', {}, h('h2', {}, t('consent.new')), h('p', { class: 'muted' }, t('consent.new_hint')), form));
}

// ---- Data-subject requests ----

function requests(root, { session }) {
  const list = h('div', { 'data-testid': 'request-list' });
  const load = async () => {
    try {
      const answer = await api('GET', '/v1/requests');
      const now = Date.now();
      const rows = [...answer.requests].sort((a, b) => {
        const late = (r) => (!r.completed_at && Date.parse(r.due_at) < now ? 0 : 1);
        return late(a) - late(b) || Date.parse(a.due_at) - Date.parse(b.due_at);
      });
      list.replaceChildren(table(
        [t('common.id'), t('common.type'), t('request.status'), t('request.due'), t('request.completed'), t('request.result')],
        rows.map((r) => [code(r.id), t(`request.type.${r.type}`), t(`request.status.${r.status}`), fmtDate(r.due_at), r.completed_at ? fmtDate(r.completed_at) : '',
          r.result && r.result.receipt
            ? h('code', { 'data-testid': 'receipt' }, jsonText(r.result.receipt))
            : r.type === 'access' && r.status === 'done' && has(session, HANDLE_ROLES)
              ? h('button', { type: 'button', class: 'link', 'data-testid': 'bundle', onclick: async () => {
                try {
                  const bundle = await api('GET', `/v1/requests/${encodeURIComponent(r.id)}/bundle`);
                  saveBlob(new Blob([JSON.stringify(bundle, null, 2)], { type: 'application/json' }), `${r.id}.json`);
                } catch (error) { list.append(errorBox(error)); }
              } }, t('request.bundle'))
              : raw(jsonText(r.reason || ''))]),
        { 'data-testid': 'requests-table' },
      ));
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  };
  root.append(h('h1', {}, t('nav.requests')));
  if (has(session, HANDLE_ROLES)) {
    const type = h('select', { name: 'type', 'data-testid': 'request-type' }, REQUEST_TYPES.map((v) => h('option', { value: v }, t(`request.type.${v}`))));
    const kind = h('select', { name: 'subject-type', 'data-testid': 'request-subject-type' }, IDENTIFIER_TYPES.map((v) => h('option', { value: v }, t(`identifier.${v}`))));
    const value = h('input', { name: 'subject-value', 'data-testid': 'request-subject-value', autocomplete: 'off', required: true });
    const verification = h('input', { name: 'verification', 'data-testid': 'request-verification', required: true, placeholder: t('request.verification_hint') });
    const message = h('div', { 'data-testid': 'request-message' });
    const form = h('form', { class: 'inline' }, type, ' ', kind, ' ', value, ' ', verification, ' ',
      h('button', { type: 'submit', 'data-testid': 'submit-request' }, t('request.submit')));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (type.value === 'erasure' && !window.confirm(t('request.confirm_erasure'))) return;
      try {
        const answer = await api('POST', '/v1/requests', {
          type: type.value,
          subject: { type: kind.value, value: value.value },
          verification: { method: verification.value },
        });
        value.value = '';
        message.replaceChildren(h('p', { 'data-testid': 'request-done' }, code(answer.id), ' ', t('request.recorded', { status: t(`request.status.${answer.status}`) })));
        load();
      } catch (error) {
        message.replaceChildren(errorBox(error));
      }
    });
    root.append(h('section', {}, h('h2', {}, t('request.new')), form, message));
  }
  root.append(h('section', {}, h('h2', {}, t('request.queue')), list));
  load();
}

// ---- Audit log ----

function audit(root) {
  const actor = h('input', { placeholder: t('audit.actor'), 'data-testid': 'audit-actor' });
  const action = h('input', { placeholder: t('audit.action'), 'data-testid': 'audit-action' });
  const purpose = h('input', { placeholder: t('common.purpose'), 'data-testid': 'audit-purpose' });
  const since = h('input', { type: 'datetime-local', 'data-testid': 'audit-since', title: t('audit.since') });
  const list = h('div', { 'data-testid': 'audit-list' });
  const verdict = h('p', { 'data-testid': 'audit-verdict' });
  let entries = [];
  const show = () => {
    const from = since.value ? Date.parse(since.value) : 0;
    const rows = entries.filter((e) => e.actor.includes(actor.value) && e.action.includes(action.value)
      && (e.purpose || '').includes(purpose.value) && Date.parse(e.at) >= from).reverse();
    list.replaceChildren(table(
      ['#', t('common.time'), t('audit.actor'), t('audit.action'), t('common.purpose'), t('audit.decision'), t('audit.rules')],
      rows.map((e) => [e.seq, fmtDate(e.at), raw(e.actor), code(e.action), e.purpose ? t(`purpose.${e.purpose}`) : '', t(`decision.${e.decision}`), code(e.rules.join(', '))]),
      { 'data-testid': 'audit-table' },
    ));
  };
  // Verifying walks the whole chain: on request only. The page loads the newest entries.
  const verify = async () => {
    verdict.replaceChildren(t('common.loading'));
    try {
      const check = await api('GET', '/v1/audit/verify');
      verdict.replaceChildren(check.ok ? t('audit.chain_ok', { n: fmtNumber(check.entries) }) : t('audit.chain_broken', { problem: check.problem ? check.problem.message : '' }),
        ' ', h('code', { 'data-testid': 'head-hash' }, check.head_hash));
      verdict.className = check.ok ? 'ok' : 'error';
    } catch (error) {
      verdict.replaceChildren(errorBox(error));
    }
  };
  const load = async () => {
    try {
      const answer = await api('GET', '/v1/audit?latest=true&limit=500');
      entries = answer.entries;
      show();
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  };
  for (const input of [actor, action, purpose, since]) input.addEventListener('input', show);
  root.append(
    h('h1', {}, t('nav.audit')),
    h('section', {}, h('button', { type: 'button', onclick: verify, 'data-testid': 'verify-chain' }, t('audit.verify')), verdict),
    h('section', {}, h('p', { class: 'inline' }, actor, ' ', action, ' ', purpose, ' ', h('label', {}, t('audit.since'), ' ', since)), list),
  );
  load();
}

export const PAGES = [
  { id: 'overview', roles: null, render: overview },
  { id: 'sources', roles: ['admin'], render: sourcesPage },
  { id: 'audiences', roles: COUNT_ROLES, render: audiences },
  { id: 'profiles', roles: PROFILE_ROLES, render: profiles },
  { id: 'consents', roles: ['admin', 'dpo', 'marketer', 'analyst', 'customer_service'], render: consentsPage },
  { id: 'exports', roles: ['admin', 'dpo', 'marketer', 'auditor'], render: exportsPage },
  { id: 'recipients', roles: ['admin', 'dpo', 'marketer', 'auditor'], render: recipientsPage },
  { id: 'requests', roles: REQUEST_ROLES, render: requests },
  { id: 'audit', roles: AUDIT_ROLES, render: audit },
  { id: 'policies', roles: ['admin', 'dpo', 'auditor'], render: policiesPage },
].map((page) => ({ ...page, allowed: (session) => page.roles === null || has(session, page.roles) }));
