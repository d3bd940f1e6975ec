"""The consent ledger and the rules that decide whether a message may be sent.

Imports neither handlers nor campaigns, and never aiohttp or the HTTP layer.
"""
