"""The HTML of the report and the companion pages: Jinja2 templates in analysis/templates/.

One environment for every page, with autoescaping on: a class name, a file name or an error
message is text, never markup. Values that are already HTML (a table rendered by pandas, a
figure's <img> tag) must be passed through ``markupsafe.Markup`` by the code that made them.
"""

from __future__ import annotations

from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

__all__ = ["Markup", "environment", "render"]


@cache
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("analysis", "templates"),
        # every template here is HTML, whatever its suffix (.html.j2)
        autoescape=select_autoescape(enabled_extensions=("html", "j2"), default_for_string=True, default=True),
        # a misspelt variable is an error, not an empty string in the report
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, /, **context) -> str:
    """Render analysis/templates/<template> with ``context``."""
    return environment().get_template(template).render(**context)
