#!/usr/bin/env python3
"""Render one of Pigsty's Patroni templates with Jinja2, for tests/render_pgsql.rs.

argv[1]: the template (tests/fixtures/pigsty-v4.5.0/roles/pgsql/templates/*.yml);
argv[2]: the variables as JSON. Prints the rendered file's PostgreSQL parameters
(`bootstrap.dcs.postgresql.parameters`) as JSON. The two Ansible filters the
templates use are given their Ansible meaning.
"""
import json
import sys
import time

import jinja2
import yaml


def ansible_bool(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("yes", "on", "1", "true", "y")


env = jinja2.Environment(keep_trailing_newline=True)
env.filters["bool"] = ansible_bool
env.filters["strftime"] = lambda fmt, *_: time.strftime(fmt)
with open(sys.argv[1], encoding="utf-8") as f:
    template = env.from_string(f.read())
rendered = template.render(**json.loads(sys.argv[2]))
doc = yaml.safe_load(rendered)
print(json.dumps(doc["bootstrap"]["dcs"]["postgresql"]["parameters"]))
