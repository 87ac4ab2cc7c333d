"""Errors the store raises; each message names what is wrong and where, never a secret."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every store error."""


class StateDirError(StoreError):
    """The state directory is missing, not a directory, or not writable."""


class NotADatabaseError(StoreError):
    """The state file exists but is not a SQLite database."""


class MigrationError(StoreError):
    """A migration failed (and was rolled back) or the database is newer than this code."""


class NotFoundError(StoreError, LookupError):
    """A record named by the caller does not exist."""


class UnknownWarehouse(NotFoundError):
    pass


class InvalidData(StoreError, ValueError):
    """A value given to a repository is not acceptable (negative price, bad access key, ...)."""


class AmbiguousProduct(StoreError, LookupError):
    """An EAN or code matches more than one product, so linking by it cannot decide."""


class BindingConflict(StoreError, ValueError):
    """The remote id is already bound to another local record on that channel."""


class OrderImportError(StoreError, ValueError):
    """This order cannot be imported as it is: the flow parks it in import_failures."""


class UnknownProduct(OrderImportError):
    pass


class InvalidCustomerDocument(OrderImportError):
    pass
