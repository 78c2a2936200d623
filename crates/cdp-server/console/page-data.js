// Where data comes from and goes: sources, exports, recipients and suppressions.

import { api } from './api.js';
import { h } from './dom.js';
import { t, fmtNumber, fmtDate } from './i18n.js';
import { barChart, identityGraph } from './charts.js';
import {
  COUNT_ROLES, BUILD_ROLES, PROFILE_ROLES, GRAPH_ROLES, REQUEST_ROLES, HANDLE_ROLES, AUDIT_ROLES, TIERS, LIFECYCLE, CHANNELS, IDENTIFIER_TYPES, REQUEST_TYPES, has, raw, code, display, errorBox, purposePicker, table, jsonText, charts, COVERAGE_PURPOSES, coverage, sha256Hex, saveBlob,
} from './ui.js';

// ---- Sources ----

export function sourcesPage(root) {
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
          ...(activity.per_minute.length ? [barChart(t('source.per_minute'), activity.per_minute.slice(-10).map((m) => ({
            label: fmtDate(m.minute), value: m.messages, display: fmtNumber(m.messages) })), { labelWidth: 170 })] : []),
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

// ---- Exports ----

const EXPORT_FIELDS = ['pseudonym', 'identifiers.email', 'identifiers.phone', 'email_sha256_google', 'email_sha256_meta',
  'phone_sha256_google', 'phone_sha256_meta', 'traits.name', 'age_band', 'region', 'city', 'tier', 'lifecycle', 'rfm_score'];
const EXPORT_ROLES = ['admin', 'dpo', 'marketer'];

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
        // The manifest as signed: its fields in their signed order, as `cdp export verify`
        // reads it; the signed bytes are this text without its final signature field.
        const manifestResponse = await fetch(`/v1/exports/${encodeURIComponent(job.id)}/manifest`, { credentials: 'same-origin' });
        if (!manifestResponse.ok) throw new Error(String(manifestResponse.status));
        const manifestText = await manifestResponse.text();
        saveBlob(new Blob([bytes]), `${job.id}.${job.format}`);
        saveBlob(new Blob([manifestText], { type: 'application/json' }), `${job.id}.manifest.json`);
        if (!window.crypto || !crypto.subtle) {
          verdict.replaceChildren(t('export.verify_needs_https'));
          return;
        }
        const signed = JSON.parse(manifestText);
        const digest = await sha256Hex(bytes);
        const fileOk = digest === signed.file_sha256 && bytes.byteLength === signed.file_bytes;
        const published = await api('GET', '/v1/keys/export');
        const unsigned = new TextEncoder().encode(manifestText.replace(/,"signature":"[^"]*"}$/, '}'));
        const fromBase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
        let signatureOk = false;
        try {
          const key = await crypto.subtle.importKey('raw', fromBase64(signed.signing_key), { name: 'Ed25519' }, false, ['verify']);
          signatureOk = await crypto.subtle.verify({ name: 'Ed25519' }, key, fromBase64(signed.signature || ''), unsigned);
        } catch {
          signatureOk = false;
        }
        const keyOk = published.public_key === signed.signing_key;
        const ok = fileOk && signatureOk && keyOk;
        verdict.className = ok ? 'ok' : 'error';
        verdict.replaceChildren(
          h('span', { 'data-testid': 'verdict-file' }, fileOk ? t('export.verified') : t('export.mismatch')), ' ', code(digest), ' · ',
          h('span', { 'data-testid': 'verdict-signature' }, signatureOk ? t('export.signature_ok') : t('export.signature_bad')), ' · ',
          h('span', {}, keyOk ? t('export.key_ok') : t('export.key_other')));
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

export function exportsPage(root, { session }) {
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
    // The recipient's destinations: the file can be delivered as well as downloaded.
    const destination = h('select', { 'data-testid': 'export-destination' }, h('option', { value: '' }, t('delivery.no_destination')));
    let destinations = [];
    const fillDestinations = () => destination.replaceChildren(h('option', { value: '' }, t('delivery.no_destination')),
      ...destinations.filter((d) => d.recipient === recipient.value && !d.retired_at).map((d) => h('option', { value: d.id }, d.name)));
    recipient.addEventListener('change', fillDestinations);
    Promise.all([api('GET', '/v1/audiences'), api('GET', '/v1/recipients'), api('GET', '/v1/destinations')]).then(([audiences, recipients, found]) => {
      audience.replaceChildren(...audiences.audiences.map((a) => h('option', { value: a.id }, a.name)));
      const recipientList = Array.isArray(recipients) ? recipients : recipients.recipients || [];
      recipient.replaceChildren(...recipientList.map((r) => h('option', { value: r.id }, r.name)));
      destinations = found.destinations || [];
      fillDestinations();
    }).catch((error) => message.replaceChildren(errorBox(error)));
    const form = h('form', {},
      h('p', { class: 'inline' }, h('label', {}, t('export.audience'), ' ', audience), ' ', h('label', {}, t('common.purpose'), ' ', picker), ' ',
        h('label', {}, t('export.recipient'), ' ', recipient), ' ', h('label', {}, t('delivery.destination'), ' ', destination), ' ',
        h('label', {}, t('export.format'), ' ', format)),
      h('p', {}, t('export.fields_hint')), fields,
      h('button', { type: 'submit', 'data-testid': 'export-start' }, t('export.start')), message);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const chosen = [...fields.querySelectorAll('input:checked')].map((input) => input.value);
      try {
        const job = await api('POST', '/v1/exports', { audience: audience.value, purpose: picker.value, recipient: recipient.value, fields: chosen, format: format.value, destination: destination.value || null });
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

// ---- Recipients and suppressions ----

const MANAGE_RECIPIENT_ROLES = ['admin', 'dpo'];

export function recipientsPage(root, { session }) {
  const list = h('div', { 'data-testid': 'recipient-list' });
  const load = async () => {
    try {
      const answer = await api('GET', '/v1/recipients');
      const rows = Array.isArray(answer) ? answer : answer.recipients || [];
      const manage = has(session, MANAGE_RECIPIENT_ROLES);
      list.replaceChildren(table([t('common.id'), t('recipient.name'), t('recipient.role'), t('recipient.region'), t('recipient.transfer'), t('recipient.purposes'), t('source.state'), ''],
        rows.map((r) => [code(r.id), raw(r.name), t(`recipient.role.${r.role}`), raw(r.region), raw(r.transfer_mechanism),
          (r.allowed_purposes || []).map((p) => t(`purpose.${p}`)).join(', '),
          r.retired_at ? t('recipient.retired_on', { date: fmtDate(r.retired_at) }) : t('source.active'),
          manage && !r.retired_at ? h('button', { type: 'button', class: 'link', 'data-testid': `retire-${r.id}`, onclick: async () => {
            if (!window.confirm(t('recipient.confirm_retire'))) return;
            try { await api('DELETE', `/v1/recipients/${encodeURIComponent(r.id)}`); load(); } catch (error) { list.append(errorBox(error)); }
          } }, t('recipient.retire')) : '']),
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
    const suppressions = h('div', { 'data-testid': 'suppression-list' });
    // The list holds types and dates only: the values are stored as blind indexes.
    const loadSuppressions = async () => {
      try {
        const page = await api('GET', '/v1/suppressions?limit=200');
        suppressions.replaceChildren(page.suppressions.length === 0 ? h('p', { class: 'muted' }, t('recipient.no_suppressions')) :
          table([t('common.id'), t('recipient.suppressed_type'), t('recipient.suppressed_at'), t('recipient.suppressed_by'), ''],
            page.suppressions.map((entry) => [code(entry.id), t(`identifier.${entry.type}`), entry.added_at ? fmtDate(entry.added_at) : '-', raw(entry.added_by || '-'),
              h('button', { type: 'button', class: 'link', 'data-testid': `unsuppress-${entry.id}`, onclick: async () => {
                if (!window.confirm(t('recipient.confirm_unsuppress'))) return;
                try { await api('DELETE', `/v1/suppressions/${encodeURIComponent(entry.id)}`); loadSuppressions(); } catch (error) { suppressions.append(errorBox(error)); }
              } }, t('recipient.unsuppress'))]),
            { 'data-testid': 'suppressions-table' }));
      } catch (error) {
        suppressions.replaceChildren(errorBox(error));
      }
    };
    suppressForm.addEventListener('submit', async (event) => {
      event.preventDefault();
      try {
        await api('POST', '/v1/suppressions', { type: kind.value, value: value.value });
        value.value = '';
        suppressMessage.replaceChildren(h('span', { class: 'ok', 'data-testid': 'suppressed' }, t('recipient.suppressed')));
        loadSuppressions();
      } catch (error) {
        suppressMessage.replaceChildren(errorBox(error));
      }
    });
    root.append(h('section', {}, h('h2', {}, t('recipient.new')), form),
      h('section', {}, h('h2', {}, t('recipient.suppressions')), h('p', { class: 'muted' }, t('recipient.suppress_hint')), suppressForm, suppressions));
    loadSuppressions();
  }
  load();
}

