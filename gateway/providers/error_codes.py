"""Twilio error codes we meet most, with the words an operator needs.

Source: Twilio's public error dictionary (https://www.twilio.com/docs/api/errors).
"""

from __future__ import annotations

TWILIO_ERRORS: dict[str, str] = {
    "20003": "Authentication failed: check the account SID and auth token",
    "20429": "Too many requests: the account's API concurrency limit was reached",
    "21211": "Invalid 'To' phone number",
    "21408": "Permission to send an SMS has not been enabled for the region",
    "21602": "Message body is required",
    "21606": "The 'From' number is not a valid, SMS-capable number for this account",
    "21610": "The recipient has replied STOP: messages to this number are blocked",
    "21612": "The 'To' number is not currently reachable via SMS",
    "21614": "The 'To' number is not a valid mobile number",
    "21617": "The message body exceeds the 1600 character limit",
    "30003": "Unreachable destination handset",
    "30004": "Message blocked by the carrier or the recipient",
    "30005": "Unknown destination handset",
    "30006": "Landline or unreachable carrier",
    "30007": "Message filtered by the carrier",
    "30008": "Unknown error from the carrier",
}

#: The recipient opted out at carrier level: record it as a consent opt-out.
CONTACT_STOPPED = "21610"


def describe(code: str | None) -> str:
    return TWILIO_ERRORS.get(code or "", "")
