"""Customers, matched by their validated CPF/CNPJ so one person is one record across channels."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from channels.models import RemoteCustomer
from daemon.store._documents import validate_document
from daemon.store.db import transaction
from daemon.store.errors import InvalidCustomerDocument


@dataclass(frozen=True)
class Customer:
    id: int
    document: str | None
    name: str
    email: str | None
    phone: str | None


def normalise_document(document: str, *, who: str = "customer") -> str:
    """The stored form of a CPF/CNPJ; raises InvalidCustomerDocument naming the problem."""
    try:
        return validate_document(document)
    except ValueError as exc:
        raise InvalidCustomerDocument(f"{who}: invalid CPF/CNPJ: {exc}") from exc


async def find_or_create_customer(conn: aiosqlite.Connection, customer: RemoteCustomer) -> int:
    """The customer's id: by document when there is one (an invalid one is an error, so the order
    is parked rather than attached to a wrong person), else by e-mail, else a new record.

    Contact details missing locally are filled in from the channel; existing ones are kept.
    """
    email = (customer.email or "").strip().lower() or None
    phone = (customer.phone or "").strip() or None
    name = customer.name.strip() or (email or "(sem nome)")
    raw_document = (customer.document or "").strip()
    document = normalise_document(raw_document, who=f"customer {name!r}") if raw_document else None
    async with transaction(conn):
        found: list[aiosqlite.Row] = []
        if document is not None:
            found = list(
                await conn.execute_fetchall(
                    "SELECT id, email, phone FROM customers WHERE document = ?", (document,)
                )
            )
        elif email is not None:
            found = list(
                await conn.execute_fetchall(
                    "SELECT id, email, phone FROM customers WHERE lower(email) = ? "
                    "ORDER BY document IS NULL, id LIMIT 1",
                    (email,),
                )
            )
        if found:
            row = found[0]
            if (row["email"] is None and email) or (row["phone"] is None and phone):
                await conn.execute(
                    "UPDATE customers SET email = COALESCE(email, ?), phone = COALESCE(phone, ?) "
                    "WHERE id = ?",
                    (email, phone, row["id"]),
                )
            return int(row["id"])
        rows = list(
            await conn.execute_fetchall(
                "INSERT INTO customers (document, name, email, phone) VALUES (?, ?, ?, ?) RETURNING id",
                (document, name, email, phone),
            )
        )
        return int(rows[0]["id"])


async def get_customer(conn: aiosqlite.Connection, customer_id: int) -> Customer | None:
    rows = list(
        await conn.execute_fetchall(
            "SELECT id, document, name, email, phone FROM customers WHERE id = ?", (customer_id,)
        )
    )
    if not rows:
        return None
    r = rows[0]
    return Customer(int(r["id"]), r["document"], r["name"], r["email"], r["phone"])
