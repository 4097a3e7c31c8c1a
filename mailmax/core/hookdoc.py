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
    """``mailmax_x(a: A, b: B) -> R``: the hook's arguments (without ``self``) and their types,
    as the contract declares them; the types are importable from :mod:`mailmax.plugin`."""
    spec = inspect.signature(getattr(hookspecs.MailMaxHooks, name))
    params = [_typed(p.name, p.annotation) for p in list(spec.parameters.values())[1:]]
    returns = "" if spec.return_annotation is inspect.Signature.empty else spec.return_annotation
    text = f"{name}({', '.join(params)})"
    return f"{text} -> {_type_text(returns)}" if returns else text


def _type_text(annotation: object) -> str:
    """An annotation as it is written in the source (they are strings there)."""
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def _typed(name: str, annotation: object) -> str:
    if annotation is inspect.Parameter.empty:
        return name
    return f"{name}: {_type_text(annotation)}"


def render() -> str:
    """One section per hook: signature and docstring."""
    out = []
    for name in hook_names():
        doc = inspect.getdoc(getattr(hookspecs.MailMaxHooks, name)) or ""
        out += [f"### `{name}`", "", "```python", signature(name), "```", "", doc, ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
