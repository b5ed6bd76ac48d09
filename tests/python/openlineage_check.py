"""Offline validation of OpenLineage events against the published JSON schemas.

The schemas live in ``openlineage_schema/`` next to this file (see its README
for where each one comes from). ``validate_event`` checks an event against the
core ``OpenLineage.json`` (2-0-2) and then every facet whose ``_schemaURL``
points into ``https://openlineage.io/spec/`` against that facet's own schema,
resolved from the local copies through a ``referencing.Registry``: nothing is
fetched from the network. A facet whose ``_schemaURL`` is elsewhere is a custom
facet and is checked by the core schema only (``_producer``/``_schemaURL``).

Use from a test::

    from openlineage_check import validate_event
    validate_event(json.loads(line))

or from a shell: ``python3 tests/python/openlineage_check.py events.jsonl``.

Requirements: jsonschema (with referencing).
"""

from __future__ import annotations

import json
import sys
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).resolve().parent / "openlineage_schema"
CORE_URI = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
SPEC_PREFIX = "https://openlineage.io/spec/"

# The 1-0-0 facet schemas vendored here reference the base facet types of core
# spec 1-0-2, which is not vendored. Those types (RunFacet, DatasetFacet,
# OutputDatasetFacet, ...) require `_producer` and `_schemaURL` in 1-0-2 as in
# 2-0-2, so the 1-0-2 URI is served by the 2-0-2 document.
CORE_ALIASES = ("https://openlineage.io/spec/1-0-2/OpenLineage.json",)

# Where a facet may appear, by the base type its schema extends.
_LOCATION_OF_BASE = {
    "RunFacet": "run",
    "JobFacet": "job",
    "DatasetFacet": "dataset",
    "InputDatasetFacet": "input",
    "OutputDatasetFacet": "output",
}


class OpenLineageError(AssertionError):
    """An event is not valid OpenLineage."""


@lru_cache(maxsize=1)
def _schemas() -> dict[str, dict[str, Any]]:
    """Every vendored schema document, by its ``$id``."""
    docs = {}
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        docs[doc["$id"]] = doc
    if CORE_URI not in docs:
        raise RuntimeError(f"{SCHEMA_DIR} has no {CORE_URI}")
    return docs


@lru_cache(maxsize=1)
def _registry() -> Registry:
    docs = _schemas()
    resources = [(uri, Resource.from_contents(doc)) for uri, doc in docs.items()]
    core = Resource.from_contents(docs[CORE_URI])
    resources += [(alias, core) for alias in CORE_ALIASES]
    return Registry().with_resources(resources)


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(
        schema,
        registry=_registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def _check(schema: dict[str, Any], instance: Any, what: str) -> None:
    errors = sorted(_validator(schema).iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        lines = [f"  at /{'/'.join(map(str, e.path))}: {e.message}" for e in errors]
        raise OpenLineageError(f"{what} is invalid:\n" + "\n".join(lines))


def _facet_base(doc: dict[str, Any], definition: str) -> str | None:
    """The core base type (``DatasetFacet``, ...) a facet definition extends."""
    for part in doc["$defs"][definition].get("allOf", []):
        ref = part.get("$ref", "")
        if ref.startswith(SPEC_PREFIX) and "#/$defs/" in ref:
            return ref.rsplit("/", 1)[-1]
    return None


def _validate_facet(name: str, facet: Any, location: str, where: str) -> None:
    if not isinstance(facet, dict):
        raise OpenLineageError(f"{where}.{name} is not an object")
    url = facet.get("_schemaURL", "")
    if not url.startswith(SPEC_PREFIX):
        return  # a custom facet: the core schema checked its base fields
    doc_uri, _, fragment = url.partition("#")
    doc = _schemas().get(doc_uri)
    if doc is None:
        raise OpenLineageError(f"{where}.{name}: no local schema for {doc_uri}")
    if not fragment.startswith("/$defs/"):
        raise OpenLineageError(f"{where}.{name}: _schemaURL {url} names no definition")
    definition = fragment.removeprefix("/$defs/")
    if definition not in doc.get("$defs", {}):
        raise OpenLineageError(f"{where}.{name}: {doc_uri} defines no {definition}")
    expected = doc.get("properties", {})
    if name not in expected:
        raise OpenLineageError(
            f"{where}.{name}: {doc_uri} defines the facet under the name(s) {sorted(expected)}"
        )
    base = _facet_base(doc, definition)
    if base is not None and _LOCATION_OF_BASE.get(base) != location:
        raise OpenLineageError(
            f"{where}.{name}: a facet of type {base} does not belong in {location} facets"
        )
    _check({"$ref": url}, facet, f"{where}.{name}")


def validate_event(event: dict[str, Any]) -> None:
    """Raises ``OpenLineageError`` unless ``event`` is a valid OpenLineage event.

    Checks the core schema (2-0-2, including the uuid format of ``runId``) and
    each facet with an ``https://openlineage.io/spec/`` ``_schemaURL`` against
    its facet schema, its facet name and the place it appears in.
    """
    _check(_schemas()[CORE_URI], event, "event")
    run = event.get("run")
    if run is not None:
        try:
            uuid.UUID(run["runId"])
        except ValueError as error:
            raise OpenLineageError(f"run.runId {run['runId']!r} is not a UUID") from error
        for name, facet in run.get("facets", {}).items():
            _validate_facet(name, facet, "run", "run.facets")
    for name, facet in event.get("job", {}).get("facets", {}).items():
        _validate_facet(name, facet, "job", "job.facets")
    for side, extra, location in (
        ("inputs", "inputFacets", "input"),
        ("outputs", "outputFacets", "output"),
    ):
        for i, dataset in enumerate(event.get(side, [])):
            where = f"{side}[{i}]"
            for name, facet in dataset.get("facets", {}).items():
                _validate_facet(name, facet, "dataset", f"{where}.facets")
            for name, facet in dataset.get(extra, {}).items():
                _validate_facet(name, facet, location, f"{where}.{extra}")


def main(paths: list[str]) -> int:
    """Validates every line of the given JSON Lines files; returns an exit code."""
    failures = 0
    for path in paths:
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                validate_event(json.loads(line))
            except (OpenLineageError, ValidationError, ValueError) as error:
                failures += 1
                print(f"{path}:{number}: {error}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
