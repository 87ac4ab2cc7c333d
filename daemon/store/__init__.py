"""The ERP database: schema migrations, one repository module per aggregate, change capture.

Repositories are plain async functions taking an ``aiosqlite.Connection``; they never commit on their
own except through :func:`daemon.store.db.transaction`, which nests as a savepoint inside a caller's
transaction, so a flow can wrap a whole page in one commit.
"""
