"""The Jinja environment and the templates acards renders.

One environment for every template: StrictUndefined (a template naming a field that does not exist
fails loudly instead of printing nothing); autoescaping for HTML.
"""

from __future__ import annotations

import textwrap

import jinja2

from .card import SCHEMA_NAME, _resolve
from .resources import data_dir, load_schema


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["doc"] = schema_comment
    return env


def schema_node(path: str) -> dict:
    """The card schema's node for a dotted path; ``name[]`` steps into an array's items."""
    schema = load_schema(SCHEMA_NAME)
    node = schema
    for step in path.split("."):
        is_array = step.endswith("[]")
        node = _resolve(schema, _resolve(schema, node)["properties"][step.removesuffix("[]")])
        if is_array:
            node = _resolve(schema, node["items"])
    return _resolve(schema, node)


def schema_comment(path: str, indent: int = 0) -> str:
    """The schema's description of ``path`` as YAML comment lines (no trailing newline)."""
    node = schema_node(path)
    text = node.get("description", "")
    if "enum" in node:
        text += " One of: " + ", ".join(map(str, node["enum"])) + "."
    if "default" in node:
        text += f" Default: {node['default']}."
    prefix = " " * indent + "# "
    return "\n".join(textwrap.wrap(text, width=98 - len(prefix), initial_indent=prefix, subsequent_indent=prefix))


def card_template() -> str:
    """The commented fill-in card that `acards init` writes."""
    schema = load_schema(SCHEMA_NAME)
    return environment().get_template("card.yaml.j2").render(schema_id=schema["$id"])
