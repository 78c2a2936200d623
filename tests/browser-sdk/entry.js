// The test page's script: Segment's browser library from npm, as a shop would bundle it,
// exposed to the test as `window.AnalyticsBrowser`.
import { AnalyticsBrowser } from '@segment/analytics-next';

window.AnalyticsBrowser = AnalyticsBrowser;
