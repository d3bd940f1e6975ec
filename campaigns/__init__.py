"""Push and pull campaigns: audiences, templates, schedules, runs and stats.

Never imports aiohttp or the HTTP layer.
"""
