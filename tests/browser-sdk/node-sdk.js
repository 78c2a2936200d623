// Sends events with the official Sensors Analytics (神策) Node SDK, sa-sdk-node, changing only
// the URL it submits to (the source's write key as its `token`). tests/e2e/browser_sdk.rs runs
// it against `cdp serve`.
//
// usage: node node-sdk.js SERVER_URL WRITE_KEY PREFIX
// Exits non-zero if the SDK reported a failed submission.
'use strict';

const SensorsAnalytics = require('sa-sdk-node');

const [server, key, prefix] = process.argv.slice(2);
const anon = `${prefix}-anon`;
const user = `${prefix}-user`;

const sa = new SensorsAnalytics();
// Batches of 4 records (gzipped `data_list` form posts), and whatever is left at close.
const submitter = sa.submitTo(
  { url: `${server}/sa?project=default&token=${key}`, gzip: true, mode: 'track', timeout: 10000 },
  { count: 4, timeSpan: 200 },
);
let failed = false;
submitter.catch((error) => {
  failed = true;
  console.error('submission failed:', error && error.message);
});

// An anonymous visitor views a product, then signs up: the two become one person.
sa.track(anon, 'ViewProduct', { product_id: 'tea-1', price: 88.5 });
sa.trackSignup(user, anon, { channel: 'node' });
sa.profileSet(user, { city: '杭州', phone: '13700137000', email: `${prefix}@example.cn` });
sa.profileSetOnce(user, { city: '北京', province: '浙江' });
sa.track(user, 'BuyProduct', { product_id: 'tea-1', revenue: 88.5 });
// A catalogue item is not a person: accepted and ignored.
sa.itemSet('tea', 'tea-1', { name: 'Longjing' });

// The batch of the last records goes out after `timeSpan`; its submission is then awaited.
// (The SDK's close() expects its logging consumer, which a network submitter has not.)
setTimeout(() => process.exit(failed ? 1 : 0), 3000);
