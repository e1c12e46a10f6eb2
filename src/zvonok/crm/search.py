"""Finding clients: by any part of a phone number, or by words of their names, company, e-mails, tags,
text fields and notes, with Russian and English stemming ("Петрову" finds "Петров", "calls" finds "call").

One interface (:class:`SearchIndex`), two native implementations chosen by the session's backend:

* **SQLite**: an FTS5 virtual table ``crm_search`` (rowid = client id). SQLite has no Russian stemmer, so
  the text is stemmed here (Snowball: Cyrillic words by the Russian algorithm, Latin ones by the English),
  and a query is the stems of its words, each as a prefix (``"петр"* AND "компан"*``): a word typed in
  part still finds, and a stem of one form is a prefix of the others' ("петров" of "Петровой").
* **PostgreSQL**: a ``tsvector`` per client in ``crm_search`` with a GIN index, built by the ``russian``
  configuration (its parser sends Cyrillic words to the Russian Snowball stemmer and ASCII words to the
  English one: the same algorithms as above), queried with prefix terms (``петр:* & компан:*``).

Both also index each word as written (SQLite: next to its stem; PostgreSQL: the ``simple`` configuration),
because Snowball cuts surnames unevenly: "Петров" stems to "петр" but "Петрову" to "петров", which only
the whole word "петров" answers.

Both tables are created by the migration, outside ``Base.metadata`` (:data:`zvonok.storage.models.NATIVE_TABLE_PREFIX`);
rows are written in the caller's transaction, so the index commits (or rolls back) with the client.

Numbers are not in the text index: "any part of a number" is a substring of the stored digits
(``crm_phones.digits LIKE '%…%'``, in the tenant), see :func:`number_fragment`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Protocol

import snowballstemmer  # type: ignore[import-untyped]
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from .models import CrmPhone

_WORD = re.compile(r"[^\W_]+")
_CYRILLIC = re.compile(r"[а-я]")
_RU = snowballstemmer.stemmer("russian")
_EN = snowballstemmer.stemmer("english")
MAX_QUERY_WORDS = 8
MIN_NUMBER_FRAGMENT = 3


def words(value: str) -> list[str]:
    """Lower-case words of ``value`` (ё as е, as people type it)."""
    return _WORD.findall(value.lower().replace("ё", "е"))


@functools.lru_cache(maxsize=1 << 16)  # names and words repeat (an import of 10 000 clients: 3 s -> 0.3 s)
def stem(word: str) -> str:
    if _CYRILLIC.search(word):
        return str(_RU.stemWord(word))
    if word.isascii() and word.isalpha():
        return str(_EN.stemWord(word))
    return word


def indexed_terms(document: str) -> list[str]:
    """What the SQLite index holds of ``document``: each word's stem, and the word itself when it differs."""
    out: list[str] = []
    for word in words(document):
        root = stem(word)
        out += [root] if root == word else [root, word]
    return out


def number_fragment(query: str) -> str | None:
    """The digits of ``query`` when it looks like (a part of) a phone number, else None.

    "+7 (495) 12-3" and "495123" are number fragments; a word with digits in it ("Room 12") is not."""
    stripped = re.sub(r"[\s()+\-.]", "", query)
    if len(stripped) >= MIN_NUMBER_FRAGMENT and stripped.isdigit():
        return stripped
    return None


class SearchIndex(Protocol):
    async def put(self, session: AsyncSession, tenant_id: int, client_id: int, document: str) -> None: ...

    async def put_new(self, session: AsyncSession, tenant_id: int, documents: Sequence[tuple[int, str]]) -> None:
        """Index clients that have no row yet, in one statement (imports): ``(client id, document)`` pairs."""
        ...

    async def drop(self, session: AsyncSession, client_id: int) -> None: ...

    async def find(self, session: AsyncSession, tenant_id: int, query: str, limit: int) -> list[int]:
        """Client ids of the tenant matching every word of ``query``, best first."""
        ...

    async def find_number(self, session: AsyncSession, tenant_id: int, digits: str, limit: int) -> list[int]:
        """Client ids of the tenant with a phone whose digits contain ``digits`` (≥ 3 of them), by id."""
        ...


# a query matching more clients than this ranks the newest of them (a fragment like "петр" matches a
# quarter of a million at a million clients: ranking them all costs 300 ms, the window keeps it in ms)
RANK_WINDOW = 1000
_SQLITE_FIND = text(
    "SELECT rowid FROM (SELECT rowid, rank FROM crm_search WHERE crm_search MATCH :q AND tenant_id = :t "
    "ORDER BY rowid DESC LIMIT :w) ORDER BY rank, rowid DESC LIMIT :n")
_SQLITE_DIGITS = text(
    "SELECT DISTINCT client_id FROM crm_search_digits WHERE crm_search_digits MATCH :q AND tenant_id = :t "
    "ORDER BY client_id LIMIT :n")
_SQLITE_INSERT = text("INSERT INTO crm_search (rowid, tenant_id, body) VALUES (:id, :t, :body)")
_PG_UPSERT = text(
    "INSERT INTO crm_search (client_id, tenant_id, doc) "
    "VALUES (:id, :t, to_tsvector('russian', :body) || to_tsvector('simple', :body)) "
    "ON CONFLICT (client_id) DO UPDATE SET doc = excluded.doc")


class SqliteFtsIndex:
    async def put(self, session: AsyncSession, tenant_id: int, client_id: int, document: str) -> None:
        await self.drop(session, client_id)
        await session.execute(_SQLITE_INSERT, {"id": client_id, "t": tenant_id,
                                               "body": " ".join(indexed_terms(document))})

    async def put_new(self, session: AsyncSession, tenant_id: int, documents: Sequence[tuple[int, str]]) -> None:
        if documents:
            await session.execute(_SQLITE_INSERT, [{"id": client_id, "t": tenant_id,
                                                    "body": " ".join(indexed_terms(document))}
                                                   for client_id, document in documents])

    async def drop(self, session: AsyncSession, client_id: int) -> None:
        await session.execute(text("DELETE FROM crm_search WHERE rowid = :id"), {"id": client_id})

    async def find(self, session: AsyncSession, tenant_id: int, query: str, limit: int) -> list[int]:
        terms = [stem(w) for w in words(query)][:MAX_QUERY_WORDS]
        if not terms:
            return []
        match = " AND ".join(f'"{t}"*' for t in terms)  # stems are letters and digits: nothing to escape
        rows = await session.execute(_SQLITE_FIND, {"q": match, "t": tenant_id, "w": RANK_WINDOW, "n": limit})
        return [int(r[0]) for r in rows]

    async def find_number(self, session: AsyncSession, tenant_id: int, digits: str, limit: int) -> list[int]:
        rows = await session.execute(_SQLITE_DIGITS, {"q": f'"{digits}"', "t": tenant_id, "n": limit})
        return [int(r[0]) for r in rows]


class PostgresFtsIndex:
    async def put(self, session: AsyncSession, tenant_id: int, client_id: int, document: str) -> None:
        await session.execute(_PG_UPSERT, {"id": client_id, "t": tenant_id, "body": " ".join(words(document))})

    async def put_new(self, session: AsyncSession, tenant_id: int, documents: Sequence[tuple[int, str]]) -> None:
        if documents:
            await session.execute(_PG_UPSERT, [{"id": client_id, "t": tenant_id, "body": " ".join(words(document))}
                                               for client_id, document in documents])

    async def drop(self, session: AsyncSession, client_id: int) -> None:
        await session.execute(text("DELETE FROM crm_search WHERE client_id = :id"), {"id": client_id})

    async def find(self, session: AsyncSession, tenant_id: int, query: str, limit: int) -> list[int]:
        terms = words(query)[:MAX_QUERY_WORDS]
        if not terms:
            return []
        params: dict[str, object] = {"t": tenant_id, "n": limit}
        parts = []
        for i, term in enumerate(terms):
            params[f"w{i}"] = term + ":*"  # words are letters and digits: no tsquery syntax in them
            parts.append(f"to_tsquery('russian', :w{i})")
        tsquery = " && ".join(parts)
        params["w"] = RANK_WINDOW
        rows = await session.execute(text(
            "SELECT client_id FROM (SELECT client_id, doc, q.query FROM crm_search, "  # noqa: S608 - placeholders only
            f"({'SELECT ' + tsquery}) AS q(query) WHERE tenant_id = :t AND doc @@ q.query "
            "ORDER BY client_id DESC LIMIT :w) AS recent ORDER BY ts_rank(doc, query) DESC, client_id LIMIT :n"),
            params)
        return [int(r[0]) for r in rows]

    async def find_number(self, session: AsyncSession, tenant_id: int, digits: str, limit: int) -> list[int]:
        return await _number_by_like(session, tenant_id, digits, limit)  # a pg_trgm index serves it (0027)


async def _number_by_like(session: AsyncSession, tenant_id: int, digits: str, limit: int) -> list[int]:
    rows = await session.execute(
        select(CrmPhone.client_id).where(CrmPhone.tenant_id == tenant_id,
                                         CrmPhone.digits.contains(digits, autoescape=True))
        .group_by(CrmPhone.client_id).order_by(CrmPhone.client_id).limit(limit))
    return [int(r[0]) for r in rows]


_SQLITE = SqliteFtsIndex()
_POSTGRES = PostgresFtsIndex()


def index_for(session: AsyncSession) -> SearchIndex:
    """The native index of the session's backend."""
    bind = session.bind
    return _POSTGRES if bind is not None and bind.dialect.name == "postgresql" else _SQLITE
