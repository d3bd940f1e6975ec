"""Push and pull campaigns: audiences, templates, schedules, runs and stats.

Uses the gateway core (storage, the outbound pipeline, profiles), consent and the handlers'
router; never imports aiohttp or the HTTP layer.
"""

from campaigns.model import Campaign, Schedule, Spec, Variant, parse_schedule, parse_spec
from campaigns.pull import PullCampaigns
from campaigns.service import Campaigns

__all__ = ["Campaign", "Campaigns", "PullCampaigns", "Schedule", "Spec", "Variant",
           "parse_schedule", "parse_spec"]
