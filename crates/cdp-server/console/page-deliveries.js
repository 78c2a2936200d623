// Where exports go by themselves: destinations (HTTPS webhooks, SFTP servers of recipients),
// their dead letters, and scheduled exports that send what changed since their last run.

import { api } from './api.js';
import { h } from './dom.js';
import { t, fmtNumber, fmtDate } from './i18n.js';
import { has, raw, code, errorBox, purposePicker, table } from './ui.js';

const MANAGE_ROLES = ['admin', 'dpo'];
const SCHEDULE_ROLES = ['admin', 'dpo', 'marketer'];
const SCHEDULE_FIELDS = ['pseudonym', 'identifiers.phone', 'identifiers.email', 'email_sha256_google', 'phone_sha256_meta', 'tier', 'lifecycle', 'city'];

const listOf = (answer, key) => (Array.isArray(answer) ? answer : answer[key] || []);

function destinationsSection(session, recipients, changed) {
  const list = h('div', { 'data-testid': 'destination-list' });
  const letters = h('div', { 'data-testid': 'dead-letters' });
  const manage = has(session, MANAGE_ROLES);
  const recipientName = (id) => (recipients.find((r) => r.id === id) || { name: id }).name;
  const showLetters = async (d) => {
    try {
      const answer = await api('GET', `/v1/destinations/${encodeURIComponent(d.id)}/dead-letters`);
      const rows = answer.dead_letters;
      letters.replaceChildren(h('h3', {}, t('delivery.dead_letters_of', { name: d.name })),
        rows.length === 0 ? h('p', { class: 'muted' }, t('delivery.no_dead_letters')) :
          table([t('delivery.export'), t('delivery.batch'), t('delivery.rows'), t('delivery.attempts'), t('delivery.last_error'), t('common.time')],
            rows.map((l) => [code(l.export_id), fmtNumber(l.batch), fmtNumber(l.rows), fmtNumber(l.attempts), raw(l.last_error || '-'), l.failed_at ? fmtDate(l.failed_at) : '-']),
            { 'data-testid': 'dead-letters-table' }),
        manage && rows.length > 0 ? h('button', { type: 'button', 'data-testid': 'retry-dead-letters', onclick: async () => {
          try {
            const done = await api('POST', `/v1/destinations/${encodeURIComponent(d.id)}/dead-letters/retry`, {});
            letters.append(h('p', { class: 'ok', 'data-testid': 'requeued' }, t('delivery.requeued', { n: done.requeued_batches })));
          } catch (error) { letters.append(errorBox(error)); }
        } }, t('delivery.retry')) : '');
    } catch (error) {
      letters.replaceChildren(errorBox(error));
    }
  };
  const load = async () => {
    try {
      const answer = await api('GET', '/v1/destinations');
      const rows = listOf(answer, 'destinations');
      list.replaceChildren(rows.length === 0 ? h('p', { class: 'muted' }, t('delivery.no_destinations')) :
        table([t('common.id'), t('delivery.name'), t('delivery.kind'), t('export.recipient'), t('delivery.target'), t('source.state'), ''],
          rows.map((d) => [code(d.id), raw(d.name), t(`delivery.kind.${d.kind}`), raw(recipientName(d.recipient)),
            d.kind === 'webhook' ? code(d.url) : code(`${d.username}@${d.host}:${d.port}${d.directory}`),
            d.retired_at ? t('recipient.retired_on', { date: fmtDate(d.retired_at) }) : t('source.active'),
            h('span', {},
              h('button', { type: 'button', class: 'link', 'data-testid': `letters-${d.id}`, onclick: () => showLetters(d) }, t('delivery.show_dead_letters')),
              manage && !d.retired_at ? h('button', { type: 'button', class: 'link', 'data-testid': `test-${d.id}`, onclick: async () => {
                try {
                  const result = await api('POST', `/v1/destinations/${encodeURIComponent(d.id)}/test`, {});
                  letters.replaceChildren(result.ok
                    ? h('p', { class: 'ok', 'data-testid': 'destination-test' }, t('delivery.test_ok', { name: d.name }))
                    : h('p', { class: 'error', 'data-testid': 'destination-test' }, t('delivery.test_failed', { name: d.name }), ' ', raw(result.error || '')));
                } catch (error) { letters.replaceChildren(errorBox(error)); }
              } }, t('delivery.test')) : '',
              manage && !d.retired_at ? h('button', { type: 'button', class: 'link', 'data-testid': `retire-destination-${d.id}`, onclick: async () => {
                if (!window.confirm(t('delivery.confirm_retire'))) return;
                try { await api('DELETE', `/v1/destinations/${encodeURIComponent(d.id)}`); load(); } catch (error) { list.append(errorBox(error)); }
              } }, t('recipient.retire')) : '')]),
          { 'data-testid': 'destinations-table' }));
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  };
  const section = h('section', {}, h('h2', {}, t('delivery.destinations')), h('p', { class: 'muted' }, t('delivery.destinations_hint')), list, letters);
  if (manage) {
    const name = h('input', { 'data-testid': 'destination-name', required: true });
    const recipient = h('select', { 'data-testid': 'destination-recipient' }, recipients.filter((r) => !r.retired_at).map((r) => h('option', { value: r.id }, r.name)));
    const kind = h('select', { 'data-testid': 'destination-kind' }, ['webhook', 'sftp'].map((k) => h('option', { value: k }, t(`delivery.kind.${k}`))));
    const url = h('input', { 'data-testid': 'destination-url', size: 40, type: 'url' });
    const host = h('input', { 'data-testid': 'destination-host' });
    const port = h('input', { 'data-testid': 'destination-port', type: 'number', value: '22', size: 5 });
    const username = h('input', { 'data-testid': 'destination-username' });
    const directory = h('input', { 'data-testid': 'destination-directory', placeholder: '/' });
    const hostKey = h('input', { 'data-testid': 'destination-host-key', size: 40 });
    const webhookFields = h('p', { class: 'inline' }, h('label', {}, t('delivery.url'), ' ', url));
    const sftpFields = h('p', { class: 'inline', hidden: true }, h('label', {}, t('delivery.host'), ' ', host), ' ', h('label', {}, t('delivery.port'), ' ', port), ' ',
      h('label', {}, t('delivery.username'), ' ', username), ' ', h('label', {}, t('delivery.directory'), ' ', directory), ' ', h('label', {}, t('delivery.host_key'), ' ', hostKey));
    kind.addEventListener('change', () => { webhookFields.hidden = kind.value !== 'webhook'; sftpFields.hidden = kind.value !== 'sftp'; });
    const message = h('div', { 'data-testid': 'destination-created' });
    const form = h('form', {},
      h('p', { class: 'inline' }, h('label', {}, t('delivery.name'), ' ', name), ' ', h('label', {}, t('export.recipient'), ' ', recipient), ' ', h('label', {}, t('delivery.kind'), ' ', kind)),
      webhookFields, sftpFields,
      h('button', { type: 'submit', 'data-testid': 'destination-create' }, t('delivery.create')), message);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const body = kind.value === 'webhook'
        ? { name: name.value, recipient: recipient.value, kind: 'webhook', url: url.value }
        : { name: name.value, recipient: recipient.value, kind: 'sftp', host: host.value, port: Number(port.value), username: username.value, directory: directory.value, host_key: hostKey.value };
      try {
        const created = await api('POST', '/v1/destinations', body);
        // Shown once: the secret is not in any later answer.
        message.replaceChildren(created.secret
          ? h('p', { class: 'ok' }, t('delivery.secret_once'), ' ', code(created.secret))
          : h('p', { class: 'ok' }, t('delivery.public_key'), ' ', code(created.public_key)));
        load();
        changed();
      } catch (error) {
        message.replaceChildren(errorBox(error));
      }
    });
    section.append(h('h3', {}, t('delivery.new_destination')), form);
  }
  load();
  return section;
}

function schedulesSection(session, recipients, hooks) {
  const list = h('div', { 'data-testid': 'schedule-list' });
  const history = h('div', { 'data-testid': 'schedule-history' });
  const run = has(session, SCHEDULE_ROLES);
  const showHistory = async (id) => {
    try {
      const s = await api('GET', `/v1/schedules/${encodeURIComponent(id)}`);
      history.replaceChildren(h('h3', {}, t('delivery.history_of', { name: s.name })),
        s.history.length === 0 ? h('p', { class: 'muted' }, t('delivery.no_runs')) :
          table([t('delivery.export'), t('export.status'), t('common.time'), t('delivery.included'), t('delivery.added'), t('delivery.removed'), t('delivery.delivery')],
            s.history.map((r) => [code(r.export_id), t(`export.status.${r.status}`), fmtDate(r.started_at),
              r.included === undefined ? '-' : fmtNumber(r.included), r.added === undefined ? '-' : fmtNumber(r.added),
              r.removals === undefined ? '-' : fmtNumber(r.removals), r.delivery ? t(`delivery.state.${r.delivery}`) : '-']),
            { 'data-testid': 'history-table' }));
    } catch (error) {
      history.replaceChildren(errorBox(error));
    }
  };
  const load = async () => {
    try {
      const answer = await api('GET', '/v1/schedules');
      const rows = listOf(answer, 'schedules');
      list.replaceChildren(rows.length === 0 ? h('p', { class: 'muted' }, t('delivery.no_schedules')) :
        table([t('common.id'), t('delivery.name'), t('delivery.cron'), t('delivery.next_run'), t('delivery.last_run'), ''],
          rows.map((s) => {
            const last = s.history[0];
            return [code(s.id), raw(s.name), code(`${s.cron} ${s.utc_offset}`),
              s.paused ? t('delivery.paused') : fmtDate(s.next_run_at),
              last ? t('delivery.last_summary', { added: fmtNumber(last.added || 0), removed: fmtNumber(last.removals || 0) }) : '-',
              h('span', {},
                h('button', { type: 'button', class: 'link', 'data-testid': `history-${s.id}`, onclick: () => showHistory(s.id) }, t('delivery.show_history')),
                run ? h('button', { type: 'button', class: 'link', 'data-testid': `run-${s.id}`, onclick: async () => {
                  try { await api('POST', `/v1/schedules/${encodeURIComponent(s.id)}/run`, {}); showHistory(s.id); load(); } catch (error) { list.append(errorBox(error)); }
                } }, t('delivery.run_now')) : '',
                run ? h('button', { type: 'button', class: 'link', 'data-testid': `pause-${s.id}`, onclick: async () => {
                  try { await api('PATCH', `/v1/schedules/${encodeURIComponent(s.id)}`, { paused: !s.paused }); load(); } catch (error) { list.append(errorBox(error)); }
                } }, s.paused ? t('delivery.resume') : t('delivery.pause')) : '')];
          }),
          { 'data-testid': 'schedules-table' }));
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  };
  const section = h('section', {}, h('h2', {}, t('delivery.schedules')), h('p', { class: 'muted' }, t('delivery.schedules_hint')), list, history);
  if (run) {
    const name = h('input', { 'data-testid': 'schedule-name', required: true });
    const audience = h('select', { 'data-testid': 'schedule-audience' });
    const picker = purposePicker(session, 'marketing.sms');
    const recipient = h('select', { 'data-testid': 'schedule-recipient' }, recipients.filter((r) => !r.retired_at).map((r) => h('option', { value: r.id }, r.name)));
    const destination = h('select', { 'data-testid': 'schedule-destination' }, h('option', { value: '' }, t('delivery.no_destination')));
    const cron = h('input', { 'data-testid': 'schedule-cron', value: '0 3 * * *', size: 12 });
    const offset = h('input', { 'data-testid': 'schedule-offset', value: '+08:00', size: 6 });
    const format = h('select', { 'data-testid': 'schedule-format' }, ['csv', 'jsonl'].map((f) => h('option', { value: f }, f.toUpperCase())));
    const fields = h('div', { class: 'fields' }, SCHEDULE_FIELDS.map((field) =>
      h('label', {}, h('input', { type: 'checkbox', value: field, checked: field === 'pseudonym', disabled: field === 'pseudonym' }), t(`export.field.${field}`))));
    const message = h('div');
    api('GET', '/v1/audiences').then((a) => audience.replaceChildren(...a.audiences.map((x) => h('option', { value: x.id }, x.name))))
      .catch((error) => message.replaceChildren(errorBox(error)));
    const fillDestinations = () => api('GET', '/v1/destinations').then((answer) => {
      const usable = listOf(answer, 'destinations').filter((d) => d.recipient === recipient.value && !d.retired_at);
      destination.replaceChildren(h('option', { value: '' }, t('delivery.no_destination')), ...usable.map((d) => h('option', { value: d.id }, d.name)));
    }).catch((error) => message.replaceChildren(errorBox(error)));
    recipient.addEventListener('change', fillDestinations);
    fillDestinations();
    hooks.destinationsChanged = fillDestinations;
    const form = h('form', {},
      h('p', { class: 'inline' }, h('label', {}, t('delivery.name'), ' ', name), ' ', h('label', {}, t('export.audience'), ' ', audience), ' ',
        h('label', {}, t('common.purpose'), ' ', picker), ' ', h('label', {}, t('export.recipient'), ' ', recipient), ' ',
        h('label', {}, t('delivery.destination'), ' ', destination)),
      h('p', { class: 'inline' }, h('label', {}, t('delivery.cron'), ' ', cron), ' ', h('label', {}, t('delivery.offset'), ' ', offset), ' ',
        h('label', {}, t('export.format'), ' ', format)),
      h('p', { class: 'muted' }, t('delivery.cron_hint')),
      fields,
      h('button', { type: 'submit', 'data-testid': 'schedule-create' }, t('delivery.create_schedule')), message);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const chosen = [...fields.querySelectorAll('input:checked')].map((input) => input.value);
      try {
        await api('POST', '/v1/schedules', {
          name: name.value, audience: audience.value, purpose: picker.value, recipient: recipient.value,
          fields: chosen, format: format.value, destination: destination.value || null, cron: cron.value, utc_offset: offset.value,
        });
        message.replaceChildren(h('p', { class: 'ok', 'data-testid': 'schedule-created' }, t('delivery.schedule_created')));
        load();
      } catch (error) {
        message.replaceChildren(errorBox(error));
      }
    });
    section.append(h('h3', {}, t('delivery.new_schedule')), form);
  }
  load();
  return section;
}

export async function deliveriesPage(root, { session }) {
  root.append(h('h1', {}, t('nav.deliveries')));
  let recipients = [];
  try {
    recipients = listOf(await api('GET', '/v1/recipients'), 'recipients');
  } catch (error) {
    root.append(errorBox(error));
  }
  // A destination added above is offered to the schedules below at once.
  const hooks = { destinationsChanged: () => {} };
  root.append(destinationsSection(session, recipients, () => hooks.destinationsChanged()), schedulesSection(session, recipients, hooks));
}
