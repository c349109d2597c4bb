#!/usr/bin/env python3
"""Validates CDEvents against Topsail's schemas (schemas/cdevents/0.4.1).

Reads JSON lines from the file given second (or standard input), each {"type": <ce_type>, "data": <the event>}; picks the
schema by type; prints each problem and exits 1 when any event does not validate (2 when a type
has no schema)."""
import json
import pathlib
import sys

from jsonschema import Draft202012Validator, FormatChecker

schemas = pathlib.Path(sys.argv[1])
by_type = {}
for path in schemas.glob("*.json"):
    schema = json.loads(path.read_text())
    event_type = schema["properties"]["context"]["properties"]["type"]["enum"][0]
    by_type[event_type] = Draft202012Validator(schema, format_checker=FormatChecker())

problems = 0
count = 0
source = open(sys.argv[2]) if len(sys.argv) > 2 else sys.stdin
for line in source:
    if not line.strip():
        continue
    message = json.loads(line)
    validator = by_type.get(message["type"])
    if validator is None:
        print(f"no schema for {message['type']}")
        sys.exit(2)
    if message["data"].get("context", {}).get("type") != message["type"]:
        print(f"ce_type {message['type']} differs from context.type {message['data'].get('context', {}).get('type')}")
        problems += 1
    for error in validator.iter_errors(message["data"]):
        print(f"{message['type']}: {'/'.join(map(str, error.path))}: {error.message}")
        problems += 1
    count += 1
print(f"{count} events, {problems} problems")
sys.exit(1 if problems else 0)
