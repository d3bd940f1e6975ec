"""Keyword routing and two-way conversations: what to answer to an inbound text.

Never imports aiohttp or the HTTP layer; receives plain data and returns decisions.
"""
