"""Render the hook reference of the plugin author guide from :mod:`mailmax.core.hookspecs`.

``python -m mailmax.core.hookdoc`` prints the Markdown that ``docs/plugins.md`` carries between
its ``<!-- hooks -->`` markers; a test fails when a hook is missing there or its signature differs.
"""

from __future__ import annotations

import inspect

from mailmax.core import hookspecs


def hook_names() -> list[str]:
    """Every hook in the contract, in declaration order."""
    return [name for name in vars(hookspecs.MailMaxHooks) if name.startswith("mailmax_")]


def signature(name: str) -> str:
    """``mailmax_x(a, b, c)``: the hook's arguments without ``self`` or annotations."""
    params = list(inspect.signature(getattr(hookspecs.MailMaxHooks, name)).parameters)[1:]
    return f"{name}({', '.join(params)})"


def render() -> str:
    """One section per hook: signature and docstring."""
    out = []
    for name in hook_names():
        doc = inspect.getdoc(getattr(hookspecs.MailMaxHooks, name)) or ""
        out += [f"### `{name}`", "", "```python", signature(name), "```", "", doc, ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
