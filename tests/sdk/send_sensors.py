"""Sends events with the official Sensors Analytics (神策) Python SDK, changing only its
server_url (the source's write key as its `token`).

Usage: send_sensors.py SERVER_URL PREFIX
Both consumers are used: DefaultConsumer (one gzipped record per request, `data`) and
BatchConsumer (`data_list`). Exits non-zero if the SDK raised.
"""

import sys

import sensorsanalytics
from sensorsanalytics import SensorsAnalyticsIdentity as Identity


def main() -> int:
    server_url, prefix = sys.argv[1:3]
    anon, user = f"{prefix}-anon", f"{prefix}-user"

    sa = sensorsanalytics.SensorsAnalytics(sensorsanalytics.DefaultConsumer(server_url, request_timeout=10))
    # An anonymous visitor views a product, then signs up: the two become one person.
    sa.track(anon, "ViewProduct", {"product_id": "tea-1", "price": 88.5}, is_login_id=False)
    sa.track_signup(user, anon, {"channel": "mini program"})
    sa.profile_set(user, {"city": "上海", "member_level": "gold"}, is_login_id=True)
    # set_once keeps what is there; unset removes a trait this source set.
    sa.profile_set_once(user, {"city": "北京", "province": "浙江"}, is_login_id=True)
    sa.profile_unset(user, ["member_level"], is_login_id=True)
    # ID-Mapping 3: the login id bound to a phone and an e-mail address.
    sa.bind(
        Identity(Identity.LOGIN_ID, user),
        Identity(Identity.MOBILE, "13800138000"),
        Identity(Identity.EMAIL, f"{prefix}@example.cn"),
    )
    sa.close()

    batch = sensorsanalytics.SensorsAnalytics(sensorsanalytics.BatchConsumer(server_url, max_size=5, request_timeout=10))
    batch.track(user, "BuyProduct", {"product_id": "tea-1", "revenue": 88.5}, is_login_id=True)
    batch.track_by_id("AddToCart", {"product_id": "tea-2"}, Identity(Identity.LOGIN_ID, user))
    # A catalogue item is not a person: accepted and ignored.
    batch.item_set("tea", "tea-1", {"name": "Longjing"})
    batch.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
