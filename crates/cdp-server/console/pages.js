// The console's pages: each declares the roles that may open it (the same table the API
// enforces: crates/cdp-server/src/permissions.rs) and renders into `root`.

import { overview, audiences } from './page-insight.js';
import { profiles, consentsPage } from './page-people.js';
import { sourcesPage, exportsPage, recipientsPage } from './page-data.js';
import { requests, audit, policiesPage } from './page-governance.js';
import { deliveriesPage } from './page-deliveries.js';
import { campaignsPage } from './page-campaigns.js';
import { has, COUNT_ROLES, PROFILE_ROLES, REQUEST_ROLES, AUDIT_ROLES } from './ui.js';

export const PAGES = [
  { id: 'overview', roles: null, render: overview },
  { id: 'sources', roles: ['admin'], render: sourcesPage },
  { id: 'audiences', roles: COUNT_ROLES, render: audiences },
  { id: 'profiles', roles: PROFILE_ROLES, render: profiles },
  { id: 'consents', roles: ['admin', 'dpo', 'marketer', 'analyst', 'customer_service'], render: consentsPage },
  { id: 'exports', roles: ['admin', 'dpo', 'marketer', 'auditor'], render: exportsPage },
  { id: 'recipients', roles: ['admin', 'dpo', 'marketer', 'auditor'], render: recipientsPage },
  { id: 'deliveries', roles: ['admin', 'dpo', 'marketer', 'auditor'], render: deliveriesPage },
  { id: 'campaigns', roles: ['admin', 'dpo', 'marketer', 'auditor'], render: campaignsPage },
  { id: 'requests', roles: REQUEST_ROLES, render: requests },
  { id: 'audit', roles: AUDIT_ROLES, render: audit },
  { id: 'policies', roles: ['admin', 'dpo', 'auditor'], render: policiesPage },
].map((page) => ({ ...page, allowed: (session) => page.roles === null || has(session, page.roles) }));
