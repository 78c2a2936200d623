// The Sensors Analytics WeChat mini-program SDK (sa-sdk-miniprogram, as it ships on npm) in
// Node, under a minimal `wx` shim: wx.request goes out through fetch, storage is a Map, the
// system, network and account answers are a phone's. It tracks one member and exits once
// every request it made was answered; non-zero if any failed.
//
// Usage: node miniprogram.js SERVER_URL LOGIN_ID OPENID
'use strict';

const [serverUrl, loginId, openid] = process.argv.slice(2);
const storage = new Map();
const inFlight = new Set();
const failures = [];
const system = {
  brand: 'Apple', model: 'iPhone 15', platform: 'ios', system: 'iOS 17.4', version: '8.0.50',
  SDKVersion: '3.3.4', language: 'zh_CN', screenWidth: 393, screenHeight: 852,
  windowWidth: 393, windowHeight: 760, pixelRatio: 3,
};
const answer = (callbacks, outcome, result) => {
  if (outcome === 'success' && callbacks.success) callbacks.success(result);
  if (outcome === 'fail' && callbacks.fail) callbacks.fail(result);
  if (callbacks.complete) callbacks.complete(result);
};

global.wx = {
  request(options) {
    const method = (options.method || 'GET').toUpperCase();
    const sent = fetch(options.url, {
      method,
      headers: options.header || {},
      body: method === 'POST' ? options.data : undefined,
    })
      .then(async (response) => {
        const result = { statusCode: response.status, data: await response.text(), header: {} };
        if (response.status >= 400) failures.push(`${method} ${response.status} ${result.data}`);
        answer(options, response.status < 400 ? 'success' : 'fail', result);
      })
      .catch((error) => {
        failures.push(String(error));
        answer(options, 'fail', { errMsg: String(error) });
      })
      .finally(() => inFlight.delete(sent));
    inFlight.add(sent);
    return { abort() {} };
  },
  getStorageSync: (key) => (storage.has(key) ? storage.get(key) : ''),
  setStorageSync: (key, value) => storage.set(key, value),
  removeStorageSync: (key) => storage.delete(key),
  getStorage(options) {
    if (storage.has(options.key)) answer(options, 'success', { data: storage.get(options.key) });
    else answer(options, 'fail', { errMsg: 'getStorage:fail data not found' });
  },
  setStorage(options) {
    storage.set(options.key, options.data);
    answer(options, 'success', {});
  },
  removeStorage(options) {
    storage.delete(options.key);
    answer(options, 'success', {});
  },
  getSystemInfo: (options) => answer(options, 'success', { ...system }),
  getSystemInfoSync: () => ({ ...system }),
  getNetworkType: (options) => answer(options, 'success', { networkType: 'wifi' }),
  onNetworkStatusChange() {},
  onAppShow() {},
  onAppHide() {},
  getAccountInfoSync: () => ({ miniProgram: { appId: 'wx0123456789abcdef', envVersion: 'release', version: '1.0.0' } }),
  getLaunchOptionsSync: () => ({ path: 'pages/index/index', scene: 1001, query: {}, referrerInfo: {} }),
  setNavigationBarTitle() {},
  login: (options) => answer(options, 'success', { code: 'code' }),
};
global.getCurrentPages = () => [{ route: 'pages/index/index', options: {} }];
global.getApp = () => ({});
global.App = (options) => options;
global.Page = (options) => options;
global.Component = (options) => options;

const sensors = require('sa-sdk-miniprogram');
sensors.setPara({
  name: 'sensors',
  server_url: serverUrl,
  show_log: false,
  autoTrack: { appLaunch: false, appShow: false, appHide: false, pageShow: false, pageShare: false, mpClick: false },
});
sensors.init();
sensors.login(loginId);
sensors.bindOpenid(openid);
sensors.track('BuyTea', { tea: 'Longjing', price: 88 });
sensors.setProfile({ city: '杭州' });

// The SDK sends in batches on a timer: wait until it has sent and every answer is in.
const started = Date.now();
(function waitForQuiet() {
  const sentSomething = failures.length > 0 || started + 1000 < Date.now();
  if (sentSomething && inFlight.size === 0 && Date.now() - started > 8000) {
    if (failures.length) {
      console.error(failures.join('\n'));
      process.exit(1);
    }
    process.exit(0);
  }
  setTimeout(waitForQuiet, 200);
})();
