// Campaigns: an audience sent on a channel with a holdout kept from contact and A/B variants,
// sent now or on a schedule, and what each send did against its holdout (aggregates only:
// arms under the minimum audience size come back withheld and are shown so).

import { api } from './api.js';
import { h } from './dom.js';
import { t, fmtNumber, fmtDate, locale } from './i18n.js';
import { barChart } from './charts.js';
import { has, raw, code, errorBox, purposePicker, table, COUNT_ROLES, BUILD_ROLES } from './ui.js';

const CHANNELS = ['sms', 'email', 'push', 'wechat', 'ads'];
const CAMPAIGN_FIELDS = ['pseudonym', 'identifiers.phone', 'identifiers.email', 'email_sha256_google', 'phone_sha256_meta'];

const percent = (rate) => (typeof rate === 'number' ? `${(rate * 100).toFixed(2)}%` : t('campaign.withheld'));
const number = (value) => (typeof value === 'number' ? fmtNumber(value) : t('campaign.withheld'));
const money = (value, currency) => (typeof value === 'number'
  ? new Intl.NumberFormat(locale(), { style: 'currency', currency: currency || 'CNY' }).format(value)
  : '-');

function whenText(campaign) {
  const s = campaign.schedule;
  if (!s) return t('campaign.manual');
  const rule = s.cron ? t('campaign.recurring', { cron: `${s.cron} ${s.utc_offset}` }) : t('campaign.once_at', { at: fmtDate(s.at) });
  if (s.paused) return `${rule} · ${t('delivery.paused')}`;
  return s.next_send_at ? `${rule} · ${t('campaign.next', { at: fmtDate(s.next_send_at) })}` : `${rule} · ${t('campaign.no_send_left')}`;
}

// One send's results: the arms, the uplift of each variant, the money.
function resultsView(r) {
  const arms = r.arms.map((a) => [
    a.arm === 'holdout' ? t('campaign.holdout') : raw(a.arm), number(a.members), number(a.sent), number(a.delivered), number(a.opened),
    number(a.clicked), number(a.conversions), percent(a.conversion_rate), money(a.revenue, r.currency),
    money(a.average_order_value, r.currency), percent(a.repurchase_rate),
    a.arm === 'holdout' ? '-' : number(a.attributed_conversions),
  ]);
  const variants = r.arms.filter((a) => a.arm !== 'holdout');
  const uplift = variants.map((a) => (a.uplift
    ? [raw(a.arm), `${a.uplift.points >= 0 ? '+' : ''}${a.uplift.points.toFixed(2)}`, `[${a.uplift.ci95[0].toFixed(2)}, ${a.uplift.ci95[1].toFixed(2)}]`,
      a.uplift.p_value.toFixed(4), a.uplift.significant ? t('campaign.significant') : t('campaign.not_significant'),
      money(a.uplift.incremental_revenue, r.currency)]
    : [raw(a.arm), t('campaign.withheld'), '-', '-', '-', '-']));
  const held = Object.entries(r.held_back || {}).map(([reason, n]) => `${t(`campaign.held.${reason}`)} ${fmtNumber(n)}`).join(' · ');
  return [
    h('p', {}, t('campaign.sent_at', { at: fmtDate(r.sent_at) }), ' · ', t('campaign.window', { event: r.conversion_event, days: r.window_days }),
      ' · ', t('campaign.final_after', { at: fmtDate(r.window_ends) })),
    table([t('campaign.arm'), t('campaign.members'), t('campaign.sent'), t('campaign.delivered'), t('campaign.opened'), t('campaign.clicked'),
      t('campaign.conversions'), t('campaign.conversion_rate'), t('campaign.revenue'), t('campaign.aov'), t('campaign.repurchase'), t('campaign.attributed')],
    arms, { 'data-testid': 'campaign-arms' }),
    barChart(t('campaign.conversion_rate'), r.arms.map((a) => ({
      label: a.arm === 'holdout' ? t('campaign.holdout') : a.arm,
      value: typeof a.conversion_rate === 'number' ? a.conversion_rate : 0,
      display: percent(a.conversion_rate),
    }))),
    h('h3', {}, t('campaign.uplift')),
    table([t('campaign.variant'), t('campaign.points'), t('campaign.ci95'), t('campaign.p_value'), t('campaign.test'), t('campaign.incremental')],
      uplift, { 'data-testid': 'campaign-uplift' }),
    h('p', { 'data-testid': 'campaign-money' }, t('campaign.cost'), ' ', money(r.cost, r.currency), ' · ROI ',
      typeof r.roi === 'number' ? `${(r.roi * 100).toFixed(1)}%` : '-', ' · CAC ', money(r.cac, r.currency)),
    h('p', { class: 'muted' }, t('campaign.held_back'), ' ', held || '-', ' · ',
      t('campaign.attribution', { model: t(`campaign.model.${r.attribution.model}`), days: r.attribution.window_days })),
    h('p', { class: 'muted' }, t('campaign.withheld_hint', { k: r.suppressed_below })),
  ];
}

function detailView(box, session, id) {
  const results = h('div', { 'data-testid': 'campaign-results' });
  const load = async () => {
    try {
      const c = await api('GET', `/v1/campaigns/${encodeURIComponent(id)}`);
      const done = c.send_history.filter((s) => s.status === 'done');
      // Newest first as listed; with several finished sends, all of them together too.
      const options = done.map((s) => h('option', { value: s.export_id }, `${fmtDate(s.started_at)} · ${s.export_id}`));
      if (done.length > 1) options.push(h('option', { value: 'all' }, t('campaign.all_sends', { n: done.length })));
      const picker = h('select', { 'data-testid': 'campaign-send' }, options);
      const show = async () => {
        try {
          const r = await api('GET', `/v1/campaigns/${encodeURIComponent(id)}/results?export=${encodeURIComponent(picker.value)}`);
          results.replaceChildren(...resultsView(r));
        } catch (error) {
          results.replaceChildren(errorBox(error));
        }
      };
      picker.addEventListener('change', show);
      box.replaceChildren(
        h('h2', {}, raw(c.name), ' ', code(c.id)),
        h('p', {}, t(`campaign.channel.${c.channel}`), ' · ', t('campaign.holdout_share', { share: Math.round(c.holdout * 100) }), ' · ',
          raw(c.variants.map((v) => `${v.name} ×${v.weight}`).join(', ')), ' · ', whenText(c)),
        table([t('delivery.export'), t('export.status'), t('common.time'), t('campaign.contacted'), t('campaign.holdout')],
          c.send_history.map((s) => [code(s.export_id), t(`export.status.${s.status}`), fmtDate(s.started_at),
            s.contacted === undefined ? '-' : fmtNumber(s.contacted), s.holdout === undefined ? '-' : fmtNumber(s.holdout)]),
          { 'data-testid': 'campaign-sends' }),
        has(session, COUNT_ROLES) && done.length > 0 ? h('p', { class: 'inline' }, h('label', {}, t('campaign.results_of'), ' ', picker)) : h('p', { class: 'muted' }, t('campaign.no_results')),
        results);
      if (has(session, COUNT_ROLES) && done.length > 0) show();
    } catch (error) {
      box.replaceChildren(errorBox(error));
    }
  };
  load();
}

function newCampaignForm(session, changed) {
  const name = h('input', { 'data-testid': 'campaign-name', required: true });
  const audience = h('select', { 'data-testid': 'campaign-audience', required: true });
  const picker = purposePicker(session, 'marketing.sms');
  const channel = h('select', { 'data-testid': 'campaign-channel' }, CHANNELS.map((c) => h('option', { value: c }, t(`campaign.channel.${c}`))));
  const recipient = h('select', { 'data-testid': 'campaign-recipient', required: true });
  const format = h('select', { 'data-testid': 'campaign-format' }, ['csv', 'jsonl'].map((f) => h('option', { value: f }, f.toUpperCase())));
  const holdout = h('input', { 'data-testid': 'campaign-holdout', type: 'number', min: 0, max: 50, step: 1, value: 10, size: 4 });
  const variants = h('input', { 'data-testid': 'campaign-variants', value: 'A=1, B=1', size: 16 });
  const perContact = h('input', { 'data-testid': 'campaign-cost', type: 'number', min: 0, step: 0.01, value: 0.05, size: 6 });
  const event = h('input', { 'data-testid': 'campaign-event', value: 'Order Completed', size: 16 });
  const days = h('input', { 'data-testid': 'campaign-days', type: 'number', min: 1, max: 365, value: 14, size: 4 });
  const when = h('select', { 'data-testid': 'campaign-when' }, ['manual', 'once', 'recurring'].map((w) => h('option', { value: w }, t(`campaign.when.${w}`))));
  const at = h('input', { 'data-testid': 'campaign-at', type: 'datetime-local', hidden: true });
  const cron = h('input', { 'data-testid': 'campaign-cron', value: '0 10 * * 1', size: 12, hidden: true });
  const offset = h('input', { 'data-testid': 'campaign-offset', value: '+08:00', size: 6, hidden: true });
  when.addEventListener('change', () => {
    at.hidden = when.value !== 'once';
    cron.hidden = when.value !== 'recurring';
    offset.hidden = when.value !== 'recurring';
  });
  const fields = h('div', { class: 'fields' }, CAMPAIGN_FIELDS.map((field) =>
    h('label', {}, h('input', { type: 'checkbox', value: field, checked: field === 'pseudonym', disabled: field === 'pseudonym' }), t(`export.field.${field}`))));
  const message = h('div');
  Promise.all([api('GET', '/v1/audiences'), api('GET', '/v1/recipients')]).then(([audiences, recipients]) => {
    audience.replaceChildren(...audiences.audiences.map((a) => h('option', { value: a.id }, a.name)));
    const list = Array.isArray(recipients) ? recipients : recipients.recipients || [];
    recipient.replaceChildren(...list.filter((r) => !r.retired_at).map((r) => h('option', { value: r.id }, r.name)));
  }).catch((error) => message.replaceChildren(errorBox(error)));
  const form = h('form', {},
    h('p', { class: 'inline' }, h('label', {}, t('delivery.name'), ' ', name), ' ', h('label', {}, t('export.audience'), ' ', audience), ' ',
      h('label', {}, t('common.purpose'), ' ', picker), ' ', h('label', {}, t('campaign.channel'), ' ', channel), ' ',
      h('label', {}, t('export.recipient'), ' ', recipient), ' ', h('label', {}, t('export.format'), ' ', format)),
    h('p', { class: 'inline' }, h('label', {}, t('campaign.holdout_percent'), ' ', holdout), ' ', h('label', {}, t('campaign.variants'), ' ', variants), ' ',
      h('label', {}, t('campaign.cost_per_contact'), ' ', perContact), ' ', h('label', {}, t('campaign.conversion_event'), ' ', event), ' ',
      h('label', {}, t('campaign.within_days'), ' ', days)),
    h('p', { class: 'inline' }, h('label', {}, t('campaign.when'), ' ', when), ' ', at, ' ', cron, ' ', offset),
    h('p', { class: 'muted' }, t('campaign.form_hint')),
    fields,
    h('button', { type: 'submit', 'data-testid': 'campaign-create' }, t('campaign.create')), message);
  form.addEventListener('submit', async (submitted) => {
    submitted.preventDefault();
    const parsed = variants.value.split(',').map((v) => v.trim()).filter(Boolean).map((v) => {
      const [variant, weight] = v.split('=');
      return { name: variant.trim(), weight: Number(weight === undefined ? 1 : weight) };
    });
    let schedule = null;
    if (when.value === 'once') schedule = { at: at.value ? new Date(at.value).toISOString() : '' };
    if (when.value === 'recurring') schedule = { cron: cron.value, utc_offset: offset.value };
    try {
      await api('POST', '/v1/campaigns', {
        name: name.value, audience: audience.value, purpose: picker.value, channel: channel.value, recipient: recipient.value,
        fields: [...fields.querySelectorAll('input:checked')].map((input) => input.value), format: format.value,
        holdout: Number(holdout.value) / 100, variants: parsed, cost: { per_contact: Number(perContact.value) },
        conversion: { event: event.value, within_days: Number(days.value) }, schedule,
      });
      message.replaceChildren(h('p', { class: 'ok', 'data-testid': 'campaign-created' }, t('campaign.created')));
      changed();
    } catch (error) {
      message.replaceChildren(errorBox(error));
    }
  });
  return h('section', {}, h('h2', {}, t('campaign.new')), form);
}

export function campaignsPage(root, { session }) {
  const detail = h('section', { 'data-testid': 'campaign-detail' });
  const list = h('div', { 'data-testid': 'campaign-list' });
  const send = has(session, BUILD_ROLES);
  const load = async () => {
    try {
      const answer = await api('GET', '/v1/campaigns');
      list.replaceChildren(answer.campaigns.length === 0 ? h('p', { class: 'muted' }, t('campaign.none')) :
        table([t('common.id'), t('delivery.name'), t('campaign.channel'), t('campaign.holdout'), t('campaign.when'), t('campaign.sends'), ''],
          answer.campaigns.map((c) => [code(c.id), raw(c.name), t(`campaign.channel.${c.channel}`), `${Math.round(c.holdout * 100)}%`,
            whenText(c), fmtNumber(c.sends.length),
            h('span', {},
              h('button', { type: 'button', class: 'link', 'data-testid': `open-${c.id}`, onclick: () => detailView(detail, session, c.id) }, t('audience.open')),
              send ? h('button', { type: 'button', class: 'link', 'data-testid': `send-${c.id}`, onclick: async () => {
                try { await api('POST', `/v1/campaigns/${encodeURIComponent(c.id)}/send`, {}); load(); detailView(detail, session, c.id); } catch (error) { list.append(errorBox(error)); }
              } }, t('campaign.send_now')) : '',
              send && c.schedule ? h('button', { type: 'button', class: 'link', 'data-testid': `pause-${c.id}`, onclick: async () => {
                try { await api('PATCH', `/v1/campaigns/${encodeURIComponent(c.id)}`, { paused: !c.schedule.paused }); load(); } catch (error) { list.append(errorBox(error)); }
              } }, c.schedule.paused ? t('delivery.resume') : t('delivery.pause')) : '')]),
          { 'data-testid': 'campaigns-table' }));
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  };
  root.append(h('h1', {}, t('nav.campaigns')), h('p', { class: 'muted' }, t('campaign.hint')));
  if (send) root.append(newCampaignForm(session, load));
  root.append(h('section', {}, h('h2', {}, t('campaign.list')), list), detail);
  load();
}
