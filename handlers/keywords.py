"""Keywords declared in configuration: a reply, tags, an attribute, a conversation."""

from __future__ import annotations

from gateway.config import Config, KeywordConfig
from gateway.models import Reply
from gateway.profiles import ProfileChanges
from gateway.templates import render
from handlers.router import Context, Handler, Router


def config_router(config: Config) -> Router:
    router = Router()
    short_codes = {p.id: p.short_code for p in config.programs}
    for keyword in config.keywords:
        router.keyword(*keyword.words, short_code=short_codes[keyword.program],
                       program=keyword.program)(_handler(keyword))
    return router


def _handler(keyword: KeywordConfig) -> Handler:
    async def handle(ctx: Context) -> list[Reply]:
        changes = ProfileChanges(
            tags_add=keyword.tags,
            attributes={keyword.attribute: " ".join(ctx.args)}
            if keyword.attribute and ctx.args else {})
        if changes.tags_add or changes.attributes:
            ctx.profile = await ctx.profiles.apply(ctx.tx, ctx.phone, changes, ctx.now,
                                                   source=f"keyword:{keyword.words[0]}")
        replies = []
        if keyword.reply:
            replies.append(Reply(render(keyword.reply, ctx.values()), keyword.program))
        if keyword.conversation:
            replies += await ctx.start_conversation(keyword.conversation)
        return replies

    return handle
