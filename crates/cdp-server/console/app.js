// The console's frame: sign-in, the navigation the signed-in role may use, the language
// switch, and the page named by the address's fragment (`#/audiences`; never personal data).

import { api, setCsrf } from './api.js';
import { h } from './dom.js';
import { t, locale, setLocale, LOCALES } from './i18n.js';
import { PAGES } from './pages.js';

const state = { session: null };

function languageSwitch() {
  return h('span', { class: 'languages' }, LOCALES.map((code) =>
    h('button', {
      type: 'button',
      class: code === locale() ? 'link current' : 'link',
      'data-testid': `lang-${code}`,
      lang: code,
      onclick: () => { setLocale(code); render(); },
    }, t(`language.${code}`))));
}

function signIn() {
  const name = h('input', { name: 'name', autocomplete: 'username', required: true, 'data-testid': 'name' });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true, 'data-testid': 'password' });
  const code = h('input', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', 'data-testid': 'code' });
  const codeRow = h('label', { hidden: true }, t('signin.code'), code);
  const message = h('div');
  const form = h('form', { class: 'signin', 'data-testid': 'signin' },
    h('h1', {}, t('app.title')),
    h('label', {}, t('signin.name'), name),
    h('label', {}, t('signin.password'), password),
    codeRow,
    h('button', { type: 'submit', 'data-testid': 'signin-submit' }, t('signin.submit')),
    message,
    languageSwitch());
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const session = await api('POST', '/v1/session', { name: name.value, password: password.value, code: code.value || undefined });
      state.session = session;
      setCsrf(session.csrf_token);
      render();
    } catch (error) {
      if (error.code === 'code_required') codeRow.hidden = false;
      message.replaceChildren(h('p', { class: 'error', role: 'alert', 'data-testid': 'error' }, t(`error.${error.code}`, { message: error.message })));
    }
  });
  return form;
}

async function signOut() {
  try {
    await api('DELETE', '/v1/session');
  } finally {
    state.session = null;
    setCsrf(null);
    window.location.hash = '';
    render();
  }
}

function render() {
  const root = document.getElementById('app');
  document.documentElement.lang = locale();
  document.title = t('app.title');
  if (!state.session) {
    root.replaceChildren(signIn());
    return;
  }
  const session = state.session;
  const wanted = (window.location.hash || '#/overview').slice(2);
  const page = PAGES.find((p) => p.id === wanted) || PAGES[0];
  const nav = h('nav', {}, PAGES.filter((p) => p.allowed(session)).map((p) =>
    h('a', { href: `#/${p.id}`, class: p === page ? 'current' : null, 'data-testid': `nav-${p.id}` }, t(`nav.${p.id}`))));
  const main = h('main', { id: `page-${page.id}`, 'data-testid': `page-${page.id}` });
  root.replaceChildren(
    h('header', {},
      h('strong', {}, t('app.title')),
      nav,
      h('span', { class: 'who' }, h('span', { 'data-raw': true }, session.name), ' ',
        h('button', { type: 'button', class: 'link', onclick: signOut, 'data-testid': 'signout' }, t('signin.sign_out'))),
      languageSwitch()),
    main);
  if (!page.allowed(session)) {
    main.append(h('p', { class: 'error', 'data-testid': 'forbidden' }, t('common.forbidden')));
    return;
  }
  page.render(main, { session });
}

async function start() {
  try {
    const session = await api('GET', '/v1/session');
    state.session = session;
    setCsrf(session.csrf_token);
  } catch {
    state.session = null;
  }
  window.addEventListener('hashchange', render);
  render();
}

start();
