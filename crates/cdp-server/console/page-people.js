// Profile lookup (masked, with the identity graph and a confirmed split) and consents.

import { api } from './api.js';
import { h } from './dom.js';
import { t, fmtNumber, fmtDate, fmtDay } from './i18n.js';
import { barChart, identityGraph, lineChart } from './charts.js';
import {
  COUNT_ROLES, BUILD_ROLES, PROFILE_ROLES, GRAPH_ROLES, REQUEST_ROLES, HANDLE_ROLES, AUDIT_ROLES, TIERS, LIFECYCLE, CHANNELS, IDENTIFIER_TYPES, REQUEST_TYPES, has, raw, code, display, errorBox, purposePicker, table, jsonText, charts, COVERAGE_PURPOSES, coverage, sha256Hex, saveBlob,
} from './ui.js';

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

export function profiles(root, { session }) {
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

// ---- Consents ----

const CONSENT_ROLES = ['admin', 'dpo', 'customer_service'];

// The states drawn in the trend, in the legend's order ("none" would dwarf the others).
const TREND_STATES = ['granted', 'stale', 'denied', 'withdrawn'];

async function trend(box, purpose, days) {
  try {
    const answer = await api('GET', `/v1/consents/trend?days=${days}`);
    const points = answer.points || [];
    const xs = points.map((p) => (p.live ? t('consent.trend_now') : fmtDay(p.at)));
    const series = TREND_STATES.map((state) => ({
      label: t(`consent.${state}`),
      values: points.map((p) => (p.purposes[purpose] || {})[state] ?? null),
    }));
    box.replaceChildren(
      h('div', { class: 'wide', 'data-testid': 'consent-trend', 'data-points': String(points.length) },
        lineChart(`${t('consent.trend')} · ${t(`purpose.${purpose}`)}`, xs, series, { format: fmtNumber })),
      h('p', { class: 'muted' }, t('consent.trend_hint', { k: fmtNumber(answer.suppressed_below) })),
      ...(points.length < 2 ? [h('p', { class: 'muted' }, t('consent.trend_first'))] : []),
    );
  } catch (error) {
    box.replaceChildren(errorBox(error));
  }
}

function trendSection(root) {
  const purpose = h('select', { 'data-testid': 'trend-purpose' }, COVERAGE_PURPOSES.map((p) => h('option', { value: p }, t(`purpose.${p}`))));
  const days = h('select', { 'data-testid': 'trend-days' }, [30, 90, 365].map((n) => h('option', { value: n }, t('consent.trend_days_n', { n }))));
  const box = h('div', { class: 'charts' });
  const draw = () => trend(box, purpose.value, days.value);
  purpose.addEventListener('change', draw);
  days.addEventListener('change', draw);
  root.append(h('section', {}, h('h2', {}, t('consent.trend')),
    h('p', { class: 'inline' }, h('label', {}, t('common.purpose'), ' ', purpose), ' ', h('label', {}, t('consent.trend_days'), ' ', days)), box));
  draw();
}

export function consentsPage(root, { session }) {
  root.append(h('h1', {}, t('nav.consents')));
  trendSection(root);
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

