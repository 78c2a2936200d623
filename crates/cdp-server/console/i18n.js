// Every label, message and chart caption of the console in English and Simplified Chinese.
// The language comes from the browser (Accept-Language, as navigator.languages), can be
// switched, and is remembered in this browser only. Numbers and dates are formatted for it.

import { en } from './i18n-en.js';
import { zh } from './i18n-zh.js';

export const LOCALES = ['en', 'zh-CN'];

const DICTIONARIES = { en, 'zh-CN': zh };
const STORAGE_KEY = 'cdp.console.language';

function preferred() {
  const stored = window.localStorage.getItem(STORAGE_KEY);
  if (LOCALES.includes(stored)) return stored;
  for (const language of navigator.languages || [navigator.language]) {
    if (/^zh\b/i.test(language)) return 'zh-CN';
    if (/^en\b/i.test(language)) return 'en';
  }
  return 'en';
}

let current = preferred();

export function locale() {
  return current;
}

export function setLocale(code) {
  if (LOCALES.includes(code)) {
    current = code;
    window.localStorage.setItem(STORAGE_KEY, code);
  }
}

// The text of `key` with `{name}` placeholders filled. An unknown error code falls back to
// the generic message; any other unknown key shows itself (and the tests look for that).
export function t(key, values = {}) {
  const dictionary = DICTIONARIES[current];
  let text = dictionary[key];
  if (text === undefined && key.startsWith('error.')) text = dictionary['error.generic'];
  if (text === undefined) text = key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (values[name] === undefined ? '' : String(values[name])));
}

export function fmtNumber(value) {
  return new Intl.NumberFormat(current).format(value);
}

export function fmtDay(value) {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : new Intl.DateTimeFormat(current, { dateStyle: 'medium' }).format(date);
}

export function fmtDate(value) {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : new Intl.DateTimeFormat(current, { dateStyle: 'medium', timeStyle: 'short' }).format(date);
}

// Keys one language has and the other lacks (the browser test asserts there are none).
export function missingKeys() {
  const missing = [];
  for (const [code, dictionary] of Object.entries(DICTIONARIES)) {
    for (const other of Object.values(DICTIONARIES)) {
      for (const key of Object.keys(other)) {
        if (!(key in dictionary)) missing.push(`${code}:${key}`);
      }
    }
  }
  return [...new Set(missing)];
}
