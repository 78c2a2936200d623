// The DPO's pages: data-subject requests, the audit log, the policies.

import { api } from './api.js';
import { h } from './dom.js';
import { t, fmtNumber, fmtDate } from './i18n.js';
import { barChart, identityGraph } from './charts.js';
import {
  COUNT_ROLES, BUILD_ROLES, PROFILE_ROLES, GRAPH_ROLES, REQUEST_ROLES, HANDLE_ROLES, AUDIT_ROLES, TIERS, LIFECYCLE, CHANNELS, IDENTIFIER_TYPES, REQUEST_TYPES, has, raw, code, display, errorBox, purposePicker, table, jsonText, charts, COVERAGE_PURPOSES, coverage, sha256Hex, saveBlob,
} from './ui.js';

// ---- Data-subject requests ----

export function requests(root, { session }) {
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

export function audit(root) {
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

export function policiesPage(root, { session }) {
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
  const golden = h('div', { 'data-testid': 'golden' });
  api('GET', '/v1/policies/golden').then((report) => {
    golden.replaceChildren(
      h('p', { class: report.failures.length ? 'error' : 'ok' }, t('policy.golden_result', { passed: fmtNumber(report.passed), cases: fmtNumber(report.cases), files: fmtNumber(report.files) })),
      ...(report.failures.length ? [h('ul', {}, report.failures.map((failure) => h('li', {}, code(failure))))] : []));
  }).catch((error) => golden.replaceChildren(errorBox(error)));
  root.append(h('section', {}, h('h2', {}, t('policy.golden')), h('p', { class: 'muted' }, t('policy.golden_hint')), golden));
  root.append(h('section', {}, h('h2', {}, t('policy.ropa')), h('p', { class: 'muted' }, t('policy.ropa_hint')),
    h('button', { type: 'button', onclick: loadRopa, 'data-testid': 'ropa-load' }, t('policy.ropa_show')), ropa));
}

