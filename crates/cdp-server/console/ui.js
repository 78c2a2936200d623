// What every page shares: the role lists of the permission table
// (crates/cdp-server/src/permissions.rs), value lists, building blocks and the audience
// charts. The API refuses whatever a role may not do, whatever a page shows.

import { api } from './api.js';
import { h } from './dom.js';
import { t, fmtNumber } from './i18n.js';
import { barChart, funnelChart, heatMap } from './charts.js';

export const COUNT_ROLES = ['admin', 'dpo', 'marketer', 'analyst'];
export const BUILD_ROLES = ['admin', 'dpo', 'marketer'];
export const PROFILE_ROLES = ['admin', 'dpo', 'marketer', 'customer_service'];
export const GRAPH_ROLES = ['admin', 'dpo'];
export const REQUEST_ROLES = ['admin', 'dpo', 'auditor'];
export const HANDLE_ROLES = ['admin', 'dpo'];
export const AUDIT_ROLES = ['admin', 'dpo', 'auditor'];

export const TIERS = ['vip', 'high_potential', 'ordinary', 'churn_warning'];
export const LIFECYCLE = ['acquisition', 'growth', 'maturity', 'decline', 'churned'];
export const CHANNELS = ['web', 'ios', 'android', 'mini_program', 'crm', 'pos', 'customer_service', 'social', 'email', 'sms'];
export const IDENTIFIER_TYPES = ['email', 'phone', 'user_id', 'anonymous_id', 'wechat_openid', 'wechat_unionid', 'alipay_user_id', 'member_id', 'crm_id', 'device_id', 'advertising_id'];
export const REQUEST_TYPES = ['access', 'erasure', 'rectification', 'restriction', 'objection'];

export const has = (session, roles) => session.roles.some((role) => roles.includes(role));

// Data shown as it is (names people typed, ids, queries, audit actions): marked, so that a
// test can tell labels, which must be translated, from data, which must not be.
export const raw = (value) => h('span', { 'data-raw': true }, value);
export const code = (value) => h('code', {}, value);

export function display(value) {
  return typeof value === 'number' ? fmtNumber(value) : String(value);
}

export function errorBox(error) {
  const text = error && error.code ? t(`error.${error.code}`, { message: error.message }) : String(error);
  return h('p', { class: 'error', role: 'alert', 'data-testid': 'error' }, text);
}

export function purposePicker(session, preferred) {
  const purposes = session.allowed_purposes;
  const chosen = purposes.includes(preferred) ? preferred : purposes[0];
  return h(
    'select',
    { name: 'purpose', 'data-testid': 'purpose', required: true },
    purposes.map((purpose) => h('option', { value: purpose, selected: purpose === chosen }, t(`purpose.${purpose}`))),
  );
}

export function table(headers, rows, attrs = {}) {
  return h(
    'table',
    attrs,
    h('thead', {}, h('tr', {}, headers.map((header) => h('th', {}, header)))),
    h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((cell) => h('td', {}, cell))))),
  );
}

export function jsonText(value) {
  if (value === null || value === undefined) return '';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

// The charts of an audience: one breakdown request (one audit entry) gives the members the
// policies allow per tier, lifecycle stage, channel and city, and on the RFM grid; counts
// below the minimum audience size come back withheld and are drawn as such.
export async function charts(container, query, purpose, dimensions = ['removed', 'tier', 'lifecycle', 'channel', 'city', 'rfm']) {
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
    if (answer.removed && answer.removed.length) {
      parts.push(h('div', { 'data-testid': 'removed-reasons' }, barChart(t('chart.removed'), bars('removed', answer.removed), { labelWidth: 200 })));
    }
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

// The purposes consents are recorded for in the console (the coverage chart's purposes come
// from the server: `POST /v1/audiences/breakdown` with the `consent` dimension).
export const COVERAGE_PURPOSES = ['analytics', 'personalization', 'marketing', 'marketing.email', 'marketing.sms', 'marketing.push'];

// Consent coverage: of everyone indexed, the share who granted each main purpose (one
// breakdown request, one audit entry; counts below the minimum audience size withheld).
export async function coverage(box, purpose) {
  try {
    const answer = await api('POST', '/v1/audiences/breakdown', { query: 'tier:*', purpose, dimensions: ['consent'] });
    const total = answer.matched;
    box.replaceChildren(h('div', { 'data-testid': 'coverage-chart' }, barChart(t('overview.coverage'), answer.consent.map((b) => {
      const share = typeof b.people === 'number' && total > 0 ? b.people / total : 0;
      return {
        label: t(`purpose.${b.value}`),
        value: share,
        display: typeof b.people === 'number' ? `${fmtNumber(Math.round(share * 100))} %` : `<${answer.suppressed_below}`,
      };
    }), { labelWidth: 150 })));
  } catch (error) {
    box.replaceChildren(errorBox(error));
  }
}

export async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest('SHA-256', buffer);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = h('a', { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

