"""The README's tour, run through a Python client generated from `/openapi.json` by
openapi-python-client (tests/e2e/sdk.rs generates it into a temporary package `cdp_client`).

Every answer is parsed by the generated client into its typed model, and its JSON is also
validated against the schema the document declares for that operation and status: a route
whose answer drifts from its declared shape fails here.

usage: tour_client.py BASE_URL ADMIN_TOKEN SERVICE_TOKEN MARKETER_TOKEN DPO_TOKEN OPENAPI_JSON
"""

import base64
import json
import re
import sys
import time

from openapi_schema_validator import OAS31Validator

from cdp_client import AuthenticatedClient
from cdp_client.api.audiences import count_audience, create_audience, get_audience
from cdp_client.api.audit import verify_audit_log
from cdp_client.api.consent import record_consent
from cdp_client.api.exports import create_export, create_recipient, get_export, list_exports
from cdp_client.api.ingestion import batch, identify
from cdp_client.api.profiles import get_profile, lookup
from cdp_client.api.requests import submit_request
from cdp_client.api.sources import create_source
from cdp_client.models import (
    Audience, AudienceCount, ConsentBody, ConsentReceipt, CountBody, CreateBody,
    CreateSource, ErrorBody, Export, ExportBody, ExportList, ExportStatus, SegmentBatch, SegmentIdentify,
    IngestAnswer, Profile, Recipient, RecipientBody, RequestBody, SourceAnswer,
)

BASE, ADMIN, SERVICE, MARKETER, DPO, SPEC_PATH = sys.argv[1:7]
with open(SPEC_PATH) as f:
    SPEC = json.load(f)
ROUTES = [
    (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
    for path in SPEC["paths"]
]
checked = []


def validated(response):
    """Checks an answer's JSON against the schema the document gives its status."""
    request = response_request[id(response)]
    method, path = request
    template = next(t for pattern, t in ROUTES if pattern.match(path))
    declared = SPEC["paths"][template][method]["responses"]
    status = str(response.status_code)
    assert status in declared, f"{method} {template} answered {status}, not declared"
    content = declared[status].get("content", {}).get("application/json")
    if content is not None:
        schema = dict(content["schema"])
        schema["components"] = SPEC["components"]
        body = json.loads(response.content)
        errors = sorted(OAS31Validator(schema).iter_errors(body), key=str)
        assert not errors, f"{method} {template} {status}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])
    checked.append(f"{method.upper()} {template} {status}")
    return response


response_request = {}


def call(module, client, expected, model, **kwargs):
    """Calls an operation of the generated client; checks its status, model and schema."""
    request = module._get_kwargs(**kwargs)
    response = module.sync_detailed(client=client, **kwargs)
    response_request[id(response)] = (request["method"].lower(), request["url"].split("?")[0])
    assert response.status_code == expected, (
        f"{request['method']} {request['url']}: {response.status_code} {response.content[:300]!r}")
    validated(response)
    if model is not None:
        assert isinstance(response.parsed, model), (model, type(response.parsed), response.content[:300])
    return response.parsed


def bearer(token):
    return AuthenticatedClient(base_url=BASE, token=token, raise_on_unexpected_status=True)


admin, service, marketer, dpo = bearer(ADMIN), bearer(SERVICE), bearer(MARKETER), bearer(DPO)

# A source; its write key authenticates ingestion (HTTP Basic, the key as the user name).
source = call(create_source, admin, 201, SourceAnswer,
              body=CreateSource(name="web shop", channel="web", default_region="CN"))
assert source.write_key.startswith("cdpwk_")
writer = AuthenticatedClient(base_url=BASE, prefix="Basic",
                             token=base64.b64encode(f"{source.write_key}:".encode()).decode())

# Events in the Segment spec: one identify, then a batch of 24 people.
answer = call(identify, writer, 200, IngestAnswer, body=SegmentIdentify.from_dict({
    "userId": "member-1", "traits": {"email": "Li.Na@example.com", "phone": "138 0013 8000",
                                     "address": {"city": "深圳"}}}))
assert answer.accepted == 1
people = [{"type": "identify", "userId": f"member-{i}",
           "traits": {"phone": f"1390000{i:04}", "address": {"city": "深圳"}}} for i in range(2, 26)]
answer = call(batch, writer, 200, IngestAnswer, body=SegmentBatch.from_dict({"batch": people}))
assert answer.accepted == 24

# Consent for SMS marketing, recorded with evidence, for 22 of them.
for i in range(1, 23):
    receipt = call(record_consent, service, 200, ConsentReceipt, body=ConsentBody.from_dict({
        "subject": {"type": "user_id", "value": f"member-{i}"}, "purpose": "marketing.sms",
        "status": "granted", "notice_version": "2026-01", "source": "app",
        "evidence": {"screen": "privacy"}}))
    assert receipt.state == "granted"

# The service desk looks her up: masked as the policies say.
profile = call(lookup, service, 200, Profile, type_="email", value="li.na@example.com",
               purpose="customer_service")
assert profile.traits["phone"].value == "138****8000", profile.traits["phone"].value

# Marketing reads without consent are denied with the articles; error bodies are typed too.
unconsented = call(lookup, service, 200, Profile, type_="phone", value="+8613900000024",
                   purpose="customer_service")
denied = call(get_profile, marketer, 403, ErrorBody, id=unconsented.id, purpose="marketing.sms")
assert denied.error.code == "policy_denied", denied

# An audience, counted once the index has followed.
deadline = time.time() + 10
while True:
    count = call(count_audience, marketer, 200, AudienceCount,
                 body=CountBody(query="city:深圳", purpose="marketing.sms"))
    if count.count == 22 or time.time() > deadline:
        break
    time.sleep(0.1)
assert count.count == 22 and count.matched == 25, count
audience = call(create_audience, marketer, 201, Audience,
                body=CreateBody(name="深圳 SMS", purpose="marketing.sms", query="city:深圳"))
assert audience.id.startswith("aud_")
call(get_audience, marketer, 200, Audience, id=audience.id)

# An export to a registered SMS processor, with its signed manifest.
recipient = call(create_recipient, admin, 201, Recipient, body=RecipientBody(
    name="SMS gateway", contact="dpo@sms.example.cn", role="processor", region="CN",
    transfer_mechanism="none", allowed_purposes=["marketing.sms"]))
job = call(create_export, marketer, 202, Export, body=ExportBody(
    audience=audience.id, purpose="marketing.sms", recipient=recipient.id,
    fields=["pseudonym", "identifiers.phone"]))
deadline = time.time() + 20
while job.status == ExportStatus.RUNNING and time.time() < deadline:
    time.sleep(0.2)
    job = call(get_export, marketer, 200, Export, id=job.id)
assert job.status == ExportStatus.DONE, job
assert job.manifest.counts.included == 22 and job.manifest.signature
listed = call(list_exports, marketer, 200, ExportList)
assert listed.exports[0].id == job.id

# Her access request, and the audit chain intact.
request = call(submit_request, dpo, 201, None, body=RequestBody.from_dict({
    "type": "access", "subject": {"type": "email", "value": "li.na@example.com"},
    "verification": {"method": "signed-in account", "checked_by": "dpo-1"}}))
assert request.to_dict()["status"] == "done", request.to_dict()
verification = call(verify_audit_log, dpo, 200, None)
assert verification.to_dict()["ok"] is True

# The rest of the management API, each answer checked against the document.
from cdp_client.api.audiences import audience_breakdown, list_audience_members
from cdp_client.api.audit import list_audit_entries
from cdp_client.api.consent import consent_trend, list_consents, record_consents
from cdp_client.api.exports import export_key, list_suppressions, suppress
from cdp_client.api.policies import evaluate_policy, policy_golden_cases, policy_ropa, show_policies
from cdp_client.api.profiles import events, identity, list_suspects
from cdp_client.api.requests import get_request, list_requests, request_bundle, run_retention
from cdp_client.api.sources import source_activity
from cdp_client.api.operations import overview
from cdp_client.models import BreakdownBody, ConsentBatchBody, EvaluateBody, RetentionBody, SuppressionBody

call(audience_breakdown, marketer, 200, None,
     body=BreakdownBody(query="city:深圳", purpose="marketing.sms"))
page = call(list_audience_members, marketer, 200, None, id=audience.id, purpose="marketing.sms")
assert len(page.members) == 22
call(list_audit_entries, dpo, 200, None, limit=5)
call(list_audit_entries, dpo, 200, None, latest=True, limit=5)
call(list_consents, service, 200, None, id=profile.id, purpose="customer_service")
call(consent_trend, admin, 200, None, days=30)
batch_answer = call(record_consents, service, 200, None, body=ConsentBatchBody.from_dict({"consents": [
    {"subject": {"type": "user_id", "value": "member-1"}, "purpose": "marketing.email", "status": "granted",
     "notice_version": "2026-01", "source": "app", "evidence": {"screen": "email"}},
    {"subject": {"type": "user_id", "value": "nobody"}, "purpose": "marketing.email", "status": "granted",
     "source": "app", "evidence": {"screen": "email"}}]}))
assert (batch_answer.recorded, batch_answer.failed) == (1, 1)
call(suppress, admin, 204, None, body=SuppressionBody.from_dict({"type": "phone", "value": "+8613900000025"}))
call(list_suppressions, admin, 200, None)
call(export_key, admin, 200, None)
call(show_policies, dpo, 200, None)
call(evaluate_policy, dpo, 200, None, body=EvaluateBody.from_dict({
    "action": "audience", "purpose": "marketing.advertising.first_party",
    "subject": {"residency": "DE", "age": 17}}))
call(policy_ropa, dpo, 200, None)
call(policy_golden_cases, dpo, 200, None)
call(identity, admin, 200, None, id=profile.id, purpose="essential.service")
call(events, admin, 200, None, id=profile.id, purpose="essential.service")
call(list_suspects, admin, 200, None)
requests = call(list_requests, dpo, 200, None)
call(get_request, dpo, 200, None, id=requests.requests[0].id)
call(request_bundle, dpo, 200, None, id=requests.requests[0].id)
call(run_retention, dpo, 200, None, body=RetentionBody(dry_run=True))
call(source_activity, admin, 200, None, id=source.id)
call(overview, admin, 200, None)

# Destinations and schedules.
from cdp_client.api.exports import (
    create_destination, create_schedule, dead_letters, export_delivery, get_destination,
    get_schedule, list_destinations, list_schedules, run_schedule, update_schedule,
)
from cdp_client.models import (
    Destination, DestinationBody, DestinationKind, Schedule, ScheduleBody, SchedulePatchBody,
)

hook = call(create_destination, admin, 201, Destination, body=DestinationBody.from_dict({
    "name": "SMS gateway hook", "recipient": recipient.id, "kind": "webhook",
    "url": "https://hooks.sms.example.cn/cdp"}))
assert hook.kind == DestinationKind.WEBHOOK and hook.secret.startswith("whsec_")
shown = call(get_destination, admin, 200, Destination, id=hook.id)
assert not shown.secret
call(list_destinations, admin, 200, None)
call(dead_letters, admin, 200, None, id=hook.id)
call(export_delivery, marketer, 404, ErrorBody, id=job.id)
nightly = call(create_schedule, marketer, 201, Schedule, body=ScheduleBody.from_dict({
    "name": "nightly SMS list", "audience": audience.id, "purpose": "marketing.sms",
    "recipient": recipient.id, "fields": ["pseudonym", "identifiers.phone"], "cron": "0 3 * * *",
    "utc_offset": "+08:00"}))
call(update_schedule, marketer, 200, Schedule, id=nightly.id, body=SchedulePatchBody(paused=True))
run = call(run_schedule, marketer, 202, Export, id=nightly.id)
assert run.schedule == nightly.id
call(get_schedule, marketer, 200, Schedule, id=nightly.id)
call(list_schedules, marketer, 200, None)

# A campaign with a holdout, sent once (22 eligible people: too few once a tenth is held out,
# so the send is refused below the minimum audience size, with its counts).
from cdp_client.api.exports import create_campaign, get_campaign, list_campaigns, send_campaign
from cdp_client.models import Campaign, CampaignBody, CampaignWithSends

campaign = call(create_campaign, marketer, 201, Campaign, body=CampaignBody.from_dict({
    "name": "双十二 SMS", "audience": audience.id, "purpose": "marketing.sms", "channel": "sms",
    "recipient": recipient.id, "fields": ["pseudonym"], "holdout": 0.1,
    "conversion": {"event": "Order Completed", "within_days": 14}}))
sent = call(send_campaign, marketer, 202, Export, id=campaign.id)
deadline = time.time() + 20
while sent.status == ExportStatus.RUNNING and time.time() < deadline:
    time.sleep(0.2)
    sent = call(get_export, marketer, 200, Export, id=sent.id)
assert sent.status in (ExportStatus.DONE, ExportStatus.REFUSED), sent
call(get_campaign, marketer, 200, CampaignWithSends, id=campaign.id)
from cdp_client.api.exports import campaign_results
from cdp_client.models import CampaignResults
if sent.status == ExportStatus.DONE:
    results = call(campaign_results, marketer, 200, CampaignResults, id=campaign.id)
    assert results.arms[0].arm == "holdout"
else:
    call(campaign_results, marketer, 409, ErrorBody, id=campaign.id)
call(list_campaigns, marketer, 200, None)

print(f"tour done: {len(checked)} answers parsed and checked against the document")
for line in checked:
    print(" ", line)
