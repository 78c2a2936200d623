"""Sends identify, track, page and alias calls with an official SDK, changing only its host.

Usage: send_events.py (segment|rudder) HOST WRITE_KEY PREFIX
Exits 1 if the SDK reported any error.
"""

import sys


def main() -> int:
    sdk, host, write_key, prefix = sys.argv[1:5]
    errors = []
    if sdk == "segment":
        import segment.analytics as analytics

        analytics.write_key = write_key
        analytics.host = host
    elif sdk == "rudder":
        import rudderstack.analytics as analytics

        analytics.write_key = write_key
        analytics.dataPlaneUrl = host
    else:
        print(f"unknown sdk {sdk}", file=sys.stderr)
        return 2
    analytics.max_retries = 1
    analytics.on_error = lambda error, batch: errors.append(repr(error))

    user, anon, anon2 = f"{prefix}-user", f"{prefix}-anon", f"{prefix}-anon2"
    analytics.identify(
        user,
        {"email": f"{prefix}@Example.com", "phone": "+86 138 0013 8000", "name": "李娜"},
        anonymous_id=anon,
    )
    analytics.track(user, "Order Completed", {"revenue": 88.5, "products": [{"category": "tea"}]})
    analytics.page(anonymous_id=anon2, category="docs", name="Pricing")
    analytics.alias(anon2, user)
    analytics.flush()
    analytics.shutdown()
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
