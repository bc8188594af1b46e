"""Vendor records shaped into typed rows by the database itself, in SQL.

The sync hands the warehouse the pages' JSON text; DuckDB or Postgres unpacks the records, checks
each field's JSON type against the contract and casts it. Records never become Python objects
on the way in, so writing runs in the database, beside the fetching thread (see BENCHMARKS.md).
A value whose type drifted gives a null typed column and a drift finding; the raw JSON keeps it
either way.

Vendor field names are untrusted: they reach SQL only as quoted string literals.
"""

from __future__ import annotations

from .schema import COMMON_FIELDS, CONTRACT_FIELDS, literal, quote

TYPED = "dripfeed_typed"  # a batch's records (r), their place, typed columns, _type_/_text_ per field
# An ISO-8601 date, optionally with a time and offset: what Python's fromisoformat reads, and
# nothing like Postgres' 'now' or 'epoch' that a cast would otherwise accept.
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
ISO_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"


def contract_kinds(stream: str) -> dict[str, str]:
    return {**COMMON_FIELDS, **CONTRACT_FIELDS[stream]}


def text_column(field: str) -> str:
    return quote(f"_text_{field}")  # a leading underscore: never a vendor column (see column_for)


def type_column(field: str) -> str:
    return quote(f"_type_{field}")


class RecordSQL:
    """SQL over a batch of staged records, one subclass per dialect.

    Per batch: `shape()` unpacks the loaded pages into TYPED, reading each contract field's JSON
    type and text once and casting it; `dedupe()` keeps the newest version of each id; `keys()`
    finds vendor fields; `batch_facts()` counts ids and finds fields whose type does not fit;
    `rows()` selects what the upsert writes. Types are named the same on both back ends
    (`seen()`): string, integer (one that fits a BIGINT), number, boolean, array, object, null;
    NULL when absent."""

    def __init__(self, stream: str) -> None:
        self.kinds = contract_kinds(stream)

    # per dialect -------------------------------------------------------------------------------
    def raw_type(self, field: str) -> str:
        """The dialect's own name for the field's JSON type (of record `r`, or struct `f`)."""
        raise NotImplementedError

    def string(self, field: str) -> str:
        """The field as text: a JSON string's value, or the JSON text of anything else."""
        raise NotImplementedError

    null_name: str  # the dialect's `raw_type()` of a JSON null

    def type_tests(self, raw_type: str, text: str) -> dict[str, str]:
        """Per common type name but null, a condition on `raw_type()` and `string()` values."""
        raise NotImplementedError

    def json_value(self, field: str) -> str:
        """A contract field of record `r` as a JSON value (contract names are plain)."""
        raise NotImplementedError

    def matches(self, value: str, pattern: str) -> str:
        raise NotImplementedError

    def try_cast(self, value: str, sql_type: str) -> str:
        raise NotImplementedError

    def records(self) -> str:
        """A query of the loaded pages' records: seq, ord (their place), r, and what raw_type() reads."""
        raise NotImplementedError

    def keys(self) -> str:
        """A query for every field name seen in TYPED."""
        raise NotImplementedError

    def temporary(self, table: str, select: str) -> str:
        """A statement making `table` from `select` for this transaction (a writer's connection lives on)."""
        return f"CREATE OR REPLACE TEMP TABLE {table} AS {select}"

    # shared ------------------------------------------------------------------------------------
    def fits(self, raw_type: str, text: str, kinds: tuple[str, ...]) -> str:
        """Whether the value's common type is one of `kinds`. (Cheaper than comparing `seen()`,
        which matters in a query over every record.)"""
        tests = self.type_tests(raw_type, text)
        return "(" + " OR ".join(f"({tests[kind]})" for kind in kinds) + ")"

    def present(self, raw_type: str) -> str:
        """Whether the field is there and not JSON null."""
        return f"{raw_type} <> {literal(self.null_name)}"

    def seen(self, raw_type: str, text: str) -> str:
        """The common type name of a value; NULL when the field is absent."""
        tests = {**self.type_tests(raw_type, text), "null": f"{raw_type} = {literal(self.null_name)}"}
        return "CASE " + " ".join(f"WHEN {test} THEN {literal(kind)}" for kind, test in tests.items()) + " END"

    @staticmethod
    def dedupe() -> str:
        """Keep the newest version of each id in TYPED (a listing can return a record twice)."""
        newer = (
            "n.version > s.version OR (n.version = s.version AND (n.seq > s.seq OR (n.seq = s.seq AND n.ord > s.ord)))"
        )
        return f"DELETE FROM {TYPED} s WHERE EXISTS (SELECT 1 FROM {TYPED} n WHERE n.id = s.id AND ({newer}))"

    def typed(self, field: str, kind: str) -> str:
        """The field cast to its contract type, or NULL when its JSON type does not fit."""
        raw, text = type_column(field), text_column(field)
        if kind == "text":
            return f"CASE WHEN {self.fits(raw, text, ('string',))} THEN {text} END"
        if kind == "boolean":
            return f"CASE WHEN {self.fits(raw, text, ('boolean',))} THEN CAST({text} AS BOOLEAN) END"
        if kind == "integer":
            return f"CASE WHEN {self.fits(raw, text, ('integer',))} THEN CAST({text} AS BIGINT) END"
        if kind == "double":
            return f"CASE WHEN {self.fits(raw, text, ('integer', 'number'))} THEN CAST({text} AS DOUBLE PRECISION) END"
        if kind == "json":  # the value itself: the text of a JSON string is not JSON
            return f"CASE WHEN {self.present(raw)} THEN {self.json_value(field)} END"
        pattern, sql_type = (ISO_DATE, "DATE") if kind == "date" else (ISO_TIMESTAMP, "TIMESTAMPTZ")
        return (
            f"CASE WHEN {self.fits(raw, text, ('string',))} AND {self.matches(text, pattern)} "
            f"THEN {self.try_cast(text, sql_type)} END"
        )

    def vendor_text(self, field: str) -> str:
        """A field outside the contract, stored as text: a string as itself, anything else as JSON."""
        return f"CASE WHEN {self.present(self.raw_type(field))} THEN {self.string(field)} END"

    def shape(self, tenant: str) -> str:
        """A statement creating TYPED from the loaded pages: every record, its place, and the
        contract's columns. Each field's JSON type and text are read once (the inner SELECT), then
        cast; drift and the upsert both read the result."""
        fields = ", ".join(
            f"{self.raw_type(field)} AS {type_column(field)}, {self.string(field)} AS {text_column(field)}"
            for field in self.kinds
        )
        values = {
            "tenant_id": literal(tenant),
            **{quote(field): self.typed(field, kind) for field, kind in self.kinds.items()},
            "_synced_at": "now()",
            "_deleted_at": self.typed("deleted_at", "timestamp"),
        }
        select = ", ".join(f"{value} AS {name}" for name, value in values.items())
        inner = f"SELECT seq, ord, r, {self.string('updated_at')} AS version, {fields} FROM ({self.records()}) records"
        return self.temporary(TYPED, f"SELECT {select}, fields.* FROM ({inner}) fields")

    def rows(self, columns: list[str], vendor_fields: dict[str, str]) -> str:
        """SELECT of a table's `columns` from TYPED; `vendor_fields` maps column -> vendor field name,
        and a vendor column this batch lacks gets NULL."""
        present = set(self.kinds) | {"tenant_id", "_synced_at", "_deleted_at"}
        values = [
            quote(c)
            if c in present
            else "r"
            if c == "_raw"
            else self.vendor_text(vendor_fields[c])
            if c in vendor_fields
            else "NULL"
            for c in columns
        ]
        return f"SELECT {', '.join(values)} FROM {TYPED}"

    def checked_fields(self) -> list[str]:
        """Contract fields whose type can drift (a json field takes any JSON)."""
        return [field for field, kind in self.kinds.items() if kind != "json"]

    def batch_facts(self) -> str:
        """One row, in one pass over TYPED (this runs on every batch): its records, its distinct ids,
        then per checked field the smallest id whose value did not fit its type, or NULL."""
        examples = ", ".join(
            f"min(CASE WHEN {self.present(type_column(field))} AND {quote(field)} IS NULL THEN id END)"
            for field in self.checked_fields()
        )
        return f"SELECT count(*), count(DISTINCT id), {examples} FROM {TYPED}"

    def seen_type(self, field: str, example_id: str) -> str:
        """The common type name of `field` in the record `example_id` of TYPED."""
        seen = self.seen(type_column(field), text_column(field))
        return f"SELECT {seen} FROM {TYPED} WHERE id = {literal(example_id)}"


class DuckDBRecords(RecordSQL):
    """Records are DuckDB JSON values. Each record is parsed twice, once for the JSON types of all
    contract fields and once for their text (multi-path json_type / json_extract_string, which
    answer lists); vendor fields are addressed by JSON pointer, so any name works."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._place = {field: n for n, field in enumerate(self.kinds, start=1)}  # DuckDB lists count from 1

    def raw_type(self, field: str) -> str:
        if field in self._place:
            return f"types[{self._place[field]}]"
        return f"json_type({self._pointer(field)})"

    def string(self, field: str) -> str:
        if field in self._place:
            return f"texts[{self._place[field]}]"
        return f"json_extract_string({self._pointer(field)}, '$')"

    @staticmethod
    def _pointer(field: str) -> str:
        return f"json_extract(r, {literal('/' + field.replace('~', '~0').replace('/', '~1'))})"

    null_name = "NULL"

    def type_tests(self, raw_type: str, text: str) -> dict[str, str]:
        big = f"{raw_type} = 'UBIGINT' AND length({text})"  # JSON integers past BIGINT are numbers
        return {
            "integer": f"{raw_type} = 'BIGINT' OR ({big} <= 18)",
            "number": f"{raw_type} = 'DOUBLE' OR ({big} > 18)",
            "string": f"{raw_type} = 'VARCHAR'",
            "boolean": f"{raw_type} = 'BOOLEAN'",
            "array": f"{raw_type} = 'ARRAY'",
            "object": f"{raw_type} = 'OBJECT'",
        }

    def json_value(self, field: str) -> str:
        return f"json_extract(r, {literal('$.' + field)})"

    def matches(self, value: str, pattern: str) -> str:
        return f"regexp_full_match({value}, {literal(pattern)})"

    def try_cast(self, value: str, sql_type: str) -> str:
        return f"TRY_CAST({value} AS {sql_type})"

    def records(self) -> str:
        paths = "[" + ", ".join(literal(f"$.{field}") for field in self.kinds) + "]"  # contract names are plain
        return (
            f"SELECT seq, ord, r, json_type(r, {paths}) AS types, json_extract_string(r, {paths}) AS texts FROM ("
            "SELECT seq, unnest(range(len(records))) AS ord, unnest(records) AS r FROM ("
            "SELECT seq, json_extract(body, '$.data[*]') AS records FROM ("
            "SELECT unnest(range(len($pages))) AS seq, unnest($pages) AS body) dripfeed_pages))"
        )

    def keys(self) -> str:
        return f"SELECT DISTINCT unnest(json_keys(r)) FROM {TYPED}"


class PostgresRecords(RecordSQL):
    """Records are Postgres `json` values (not jsonb: the raw record keeps the vendor's exact text)."""

    def raw_type(self, field: str) -> str:
        return f"json_typeof(r -> {literal(field)})"

    def string(self, field: str) -> str:
        return f"(r ->> {literal(field)})"

    null_name = "null"

    def type_tests(self, raw_type: str, text: str) -> dict[str, str]:
        whole = f"{text} ~ '^-?[0-9]{{1,18}}$'"  # a JSON integer that fits a BIGINT
        return {
            "integer": f"{raw_type} = 'number' AND {whole}",
            "number": f"{raw_type} = 'number' AND NOT {whole}",
            **{kind: f"{raw_type} = {literal(kind)}" for kind in ("string", "boolean", "array", "object")},
        }

    def json_value(self, field: str) -> str:
        return f"(r -> {literal(field)})"

    def matches(self, value: str, pattern: str) -> str:
        return f"{value} ~ {literal(pattern)}"

    def try_cast(self, value: str, sql_type: str) -> str:
        # Postgres 15 has no TRY_CAST; the session-local function returns NULL for 2026-02-30.
        return f"pg_temp.dripfeed_try_{sql_type.lower()}({value})"

    @staticmethod
    def functions() -> list[str]:
        """Session-local cast functions that answer NULL instead of failing the batch."""
        return [
            f"CREATE OR REPLACE FUNCTION pg_temp.dripfeed_try_{sql_type.lower()}(value text) RETURNS {sql_type} "
            f"LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN value::{sql_type}; "
            "EXCEPTION WHEN others THEN RETURN NULL; END $$"
            for sql_type in ("DATE", "TIMESTAMPTZ")
        ]

    def records(self) -> str:
        return (
            "SELECT p.seq, e.ord, e.r FROM dripfeed_pages p, "
            "json_array_elements(p.body::json -> 'data') WITH ORDINALITY AS e(r, ord)"
        )

    def keys(self) -> str:
        return f"SELECT DISTINCT json_object_keys(r) FROM {TYPED}"

    def temporary(self, table: str, select: str) -> str:
        return f"CREATE TEMP TABLE {table} ON COMMIT DROP AS {select}"
