"""The one Jinja environment every Retain template runs in: sandboxed, bounded, plain data only.

Every render — body, subject, preheader, text part; for ``send``, ``render``, ``lint``, the preview
pages and its test send — goes through :class:`campaigns.render.CampaignRenderer`, whose environments
are :func:`template_environment`: Jinja's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment`
(no ``__class__``/``__globals__``/``_private`` attribute, no ``list.append``/``dict.update``) plus
bounds that end a runaway template with a :class:`RenderLimitError` naming the template file and line:

==========================  =====================================================================
bound                       default (:class:`RenderLimits`)
==========================  =====================================================================
render time per message     5 s of template work, as CPU time of the rendering thread (a loaded
                            machine does not trip it, a runaway loop does; checked at every loop
                            iteration, block, macro and call; the MJML step is not counted)
output size                 2,000,000 characters per template part (Gmail clips at ~102 KB)
``range()`` length          10,000 items
strings and lists           2,000,000 items when passed to a call, stored in a ``namespace``, or
                            built by ``*`` / ``%`` / ``center`` / ``format`` / ``replace`` ...;
                            integers from ``*`` and ``**`` at most 4,096 bits
==========================  =====================================================================

The globals are ``range`` (bounded), ``dict``, ``namespace`` (bounded), ``cycler`` and ``joiner``
(``lipsum`` is removed). The context is checked by :func:`check_context`: plain data only — dicts with
string keys, lists, strings, numbers, booleans, dates, ``None`` — so a template can never reach the
settings, the store or the environment, whatever a campaign-kind plug-in puts in its context.

Front matter is parsed by :mod:`campaigns.definition`, which refuses YAML anchors and aliases.
"""

from __future__ import annotations

import re
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from typing import Any

import jinja2
from jinja2.compiler import CodeGenerator, CompilerExit
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Namespace
from markupsafe import Markup

from campaigns.errors import TemplateError


@dataclass(frozen=True, slots=True)
class RenderLimits:
    """Bounds for one message's templates (see the module docstring)."""

    seconds: float = 5.0
    output_chars: int = 2_000_000
    range_items: int = 10_000
    int_bits: int = 4_096


DEFAULT_LIMITS = RenderLimits()
#: a width or precision this long in a format string (7 digits: a million characters) is refused
_BIG_WIDTH_RE = re.compile(r"\d{7,}")
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


class RenderLimitError(SecurityError):
    """A template went past a bound (time, output size, range length, value size).

    A :class:`jinja2.TemplateError`, so the renderer reports it like any template error, as a
    :class:`~campaigns.errors.RenderError` naming ``template`` and ``line``.
    """

    def __init__(self, message: str, template: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.template = template
        self.line = line


def _template_frame(depth: int = 2) -> tuple[str | None, int | None]:
    """The innermost frame of template code on the stack: (template file, template line)."""
    frame: types.FrameType | None = sys._getframe(depth)
    while frame is not None:
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            return template.filename or template.name, template.get_corresponding_lineno(frame.f_lineno)
        frame = frame.f_back
    return None, None


def _generator_frame(gen: Any) -> tuple[str | None, int | None]:
    """Where a suspended template generator (and the generators it delegates to) stands."""
    found: tuple[str | None, int | None] = (None, None)
    while gen is not None and getattr(gen, "gi_frame", None) is not None:
        frame = gen.gi_frame
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            found = (template.filename or template.name, template.get_corresponding_lineno(frame.f_lineno))
        gen = getattr(gen, "gi_yieldfrom", None)
    return found


def _limit(message: str, where: tuple[str | None, int | None] | None = None) -> RenderLimitError:
    template, line = where if where is not None else _template_frame(3)
    return RenderLimitError(message, template, line)


# ---------------------------------------------------------------------- the time budget

_budget = threading.local()


@contextmanager
def render_budget(limits: RenderLimits = DEFAULT_LIMITS) -> Iterator[None]:
    """Template work inside this block shares one deadline (nested blocks join the outer one).

    The clock is :func:`time.thread_time`: the CPU time of this thread, so other threads and other
    processes on a busy machine do not count against a template."""
    if getattr(_budget, "deadline", None) is not None:
        yield
        return
    _budget.deadline = time.thread_time() + limits.seconds
    _budget.seconds = limits.seconds
    try:
        yield
    finally:
        _budget.deadline = None


@contextmanager
def budget_paused() -> Iterator[None]:
    """Work that is not the template's (the MJML compiler) does not count against the deadline."""
    start = time.thread_time()
    try:
        yield
    finally:
        if getattr(_budget, "deadline", None) is not None:
            _budget.deadline += time.thread_time() - start


def tick() -> None:
    """Called by template code at every loop iteration, block body and call: ends a slow render."""
    deadline = getattr(_budget, "deadline", None)
    if deadline is not None and time.thread_time() > deadline:
        raise _limit(f"the template ran longer than {_budget.seconds:g} s (a runaway loop?)")


class _TickingCodeGenerator(CodeGenerator):
    """Jinja's code generator with a :func:`tick` at the top of every block body (loops, ifs,
    macros, blocks), so no template loop can run without the deadline being checked."""

    def blockvisit(self, nodes: Iterable[jinja2.nodes.Node], frame: Any) -> None:
        try:
            self.writeline("environment.retain_tick()")
            for node in nodes:
                self.visit(node, frame)
        except CompilerExit:
            pass


# ---------------------------------------------------------------------- size checks


def _size(value: Any) -> int:
    # str.__len__ on purpose: the renderer's compile markers make len() mean "used as data"
    if isinstance(value, str):
        return str.__len__(value)
    if isinstance(value, list | tuple | dict | set | frozenset):
        return len(value)
    return 0


class _Bounds:
    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits

    def chars(self, n: Any, what: str) -> None:
        if isinstance(n, int) and not isinstance(n, bool) and n > self.limits.output_chars:
            raise _limit(f"{what} of {n:,} characters is over the {self.limits.output_chars:,} allowed")

    def value(self, value: Any, what: str) -> None:
        if _size(value) > self.limits.output_chars:
            raise _limit(
                f"{what}: a value of {_size(value):,} items is over the {self.limits.output_chars:,} allowed"
            )

    def int_bits(self, value: Any, what: str) -> None:
        if isinstance(value, int) and value.bit_length() > self.limits.int_bits:
            raise _limit(f"{what}: a number over {self.limits.int_bits:,} bits")

    def format_string(self, fmt: Any, args: Iterable[Any]) -> None:
        if isinstance(fmt, str) and _BIG_WIDTH_RE.search(str.__str__(fmt)):
            raise _limit("a format width or precision of a million characters or more")
        for arg in args:
            self.chars(arg, "a format width")


class RetainSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with Retain's bounds (see the module docstring)."""

    code_generator_class = _TickingCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, *args: Any, limits: RenderLimits = DEFAULT_LIMITS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.bounds = _Bounds(limits)
        self.retain_tick = tick
        self.globals.pop("lipsum", None)
        self.globals["range"] = self._range
        self.globals["namespace"] = _bounded_namespace(self.bounds)
        for name, check in _FILTER_CHECKS.items():
            self.filters[name] = _checked_filter(self.filters[name], check, self.bounds)

    def _range(self, *args: int) -> range:
        rng = range(*args)
        if len(rng) > self.limits.range_items:
            raise _limit(
                f"range() of {len(rng):,} items: a template may loop over at most {self.limits.range_items:,}"
            )
        return rng

    def concat(self, parts: Iterable[str]) -> str:  # type: ignore[override]
        """The output, refused as soon as it passes the size bound (naming the line writing it)."""
        out: list[str] = []
        size = 0
        limit = self.limits.output_chars
        for part in parts:
            size += str.__len__(part)
            if size > limit:
                where = _generator_frame(parts)
                raise RenderLimitError(
                    f"the template wrote more than {limit:,} characters (a runaway loop?)", *where
                )
            out.append(part)
        return "".join(out)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        b = self.bounds
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(n, int) and _size(seq) and n > 0:
                    b.chars(_size(seq) * n, "repeating a value")
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > self.limits.int_bits:
                    raise _limit(f"a product over {self.limits.int_bits:,} bits")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                if right * abs(left).bit_length() > self.limits.int_bits:
                    raise _limit(f"a power over {self.limits.int_bits:,} bits")
        elif operator == "%" and isinstance(left, str):
            b.format_string(left, right if isinstance(right, tuple) else (right,))
        return self.binop_table[operator](left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        tick()
        b = __self.bounds
        for arg in (*args, *kwargs.values()):
            b.value(arg, "a call argument")
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str) and isinstance(__obj, types.BuiltinMethodType | types.MethodType):
            if name in _WIDTH_METHODS and args:
                b.chars(args[0], f"str.{name}()")
            elif name == "expandtabs":
                b.chars(
                    str.count(owner, "\t") * (args[0] if args and isinstance(args[0], int) else 8),
                    "expandtabs()",
                )
            elif (
                name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str)
            ):
                grow = str.count(owner, args[0]) * max(_size(args[1]) - _size(args[0]), 0)
                b.chars(_size(owner) + grow, "str.replace()")
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__
        bounds = self.bounds

        def checked(*args: Any, **kwargs: Any) -> str:
            bounds.format_string(fmt, (*args, *kwargs.values()))
            return wrapped(*args, **kwargs)

        return checked


class BoundedTemplate(jinja2.Template):
    """A template whose every render runs inside a :func:`render_budget`."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        limits = getattr(self.environment, "limits", DEFAULT_LIMITS)
        with render_budget(limits):
            return super().render(*args, **kwargs)


RetainSandbox.template_class = BoundedTemplate


def _bounded_namespace(bounds: _Bounds) -> type[Namespace]:
    class BoundedNamespace(Namespace):
        """``namespace()``: a value stored in it is bounded like a call argument (no doubling loops)."""

        def __setitem__(self, name: str, value: Any) -> None:
            bounds.value(value, f"namespace value {name!r}")
            tick()
            super().__setitem__(name, value)

    return BoundedNamespace


def _checked_filter(
    original: Callable[..., Any],
    check: Callable[[_Bounds, tuple[Any, ...], dict[str, Any]], None],
    bounds: _Bounds,
) -> Callable[..., Any]:
    passes_first = hasattr(original, "jinja_pass_arg")

    def checked(*args: Any, **kwargs: Any) -> Any:
        check(bounds, args[1:] if passes_first else args, kwargs)
        return original(*args, **kwargs)

    if passes_first:  # keep Jinja's pass_context / pass_eval_context / pass_environment marker
        checked.jinja_pass_arg = original.jinja_pass_arg  # type: ignore[attr-defined]
    checked.__name__ = getattr(original, "__name__", "filter")
    return checked


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], position: int, name: str) -> Any:
    return args[position] if len(args) > position else kwargs.get(name)


def _width_filter(name: str, what: str) -> Callable[[_Bounds, tuple[Any, ...], dict[str, Any]], None]:
    def check(bounds: _Bounds, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        bounds.chars(_arg(args, kwargs, 1, name), what)

    return check


def _count_filter(name: str, what: str) -> Callable[[_Bounds, tuple[Any, ...], dict[str, Any]], None]:
    def check(bounds: _Bounds, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        n = _arg(args, kwargs, 1, name)
        if isinstance(n, int) and n > bounds.limits.range_items:
            raise _limit(f"{what} into {n:,} parts (at most {bounds.limits.range_items:,})")

    return check


def _format_filter(bounds: _Bounds, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if args:
        bounds.format_string(args[0], (*args[1:], *kwargs.values()))


def _replace_filter(bounds: _Bounds, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    s, old, new = _arg(args, kwargs, 0, "s"), _arg(args, kwargs, 1, "old"), _arg(args, kwargs, 2, "new")
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        grow = str.count(s, old) * max(_size(new) - _size(old), 0) if old else _size(s) * _size(new)
        bounds.chars(_size(s) + grow, "replace")


_FILTER_CHECKS: dict[str, Callable[[_Bounds, tuple[Any, ...], dict[str, Any]], None]] = {
    "center": _width_filter("width", "center width"),
    "indent": _width_filter("width", "indent width"),
    "wordwrap": _width_filter("width", "wordwrap width"),
    "truncate": _width_filter("length", "truncate length"),
    "batch": _count_filter("linecount", "batch"),
    "slice": _count_filter("slices", "slice"),
    "format": _format_filter,
    "replace": _replace_filter,
}


def template_environment(
    loader: jinja2.BaseLoader | None, *, autoescape: bool, limits: RenderLimits = DEFAULT_LIMITS
) -> RetainSandbox:
    """The environment every campaign template is compiled in (StrictUndefined, sandboxed, bounded)."""
    return RetainSandbox(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        keep_trailing_newline=True,
        auto_reload=False,
        limits=limits,
    )


# ---------------------------------------------------------------------- the context

_SCALARS = (str, int, float, bool, date, datetime, time_of_day, Decimal, type(None))


_LEAVES = frozenset({str, int, float, bool, type(None)})


def _is_plain(context: dict[str, Any]) -> bool:
    """The fast check (runs per recipient): no paths built, exact types first."""
    stack: list[Any] = [context]
    pop, push, leaves = stack.pop, stack.extend, _LEAVES
    while stack:
        value = pop()
        kind = type(value)
        if kind in leaves:
            continue
        if kind is dict:
            for key in value:
                if type(key) is not str:
                    return False
            push(value.values())
        elif kind is list or kind is tuple:
            push(value)
        elif not isinstance(value, _SCALARS):
            return False
    return True


def check_context(context: dict[str, Any], template: str) -> None:
    """TemplateError unless ``context`` is plain data (see the module docstring), naming the path of
    the first value that is not — e.g. a settings object a campaign-kind plug-in passed on."""
    if _is_plain(context):
        return
    stack: list[tuple[str, Any]] = [(key, value) for key, value in context.items()]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _SCALARS) or isinstance(value, Markup):
            continue
        if type(value) is dict or isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise TemplateError(
                        f"the template context has a non-string key {key!r} under {path!r}", template=template
                    )
                stack.append((f"{path}.{key}", item))
            continue
        if isinstance(value, list | tuple):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
            continue
        raise TemplateError(
            f"the template context holds a {type(value).__name__} at {path!r}: templates see plain data "
            "only (dicts, lists, strings, numbers, dates); a campaign kind must not pass objects",
            template=template,
        )


__all__ = [
    "DEFAULT_LIMITS",
    "BoundedTemplate",
    "RenderLimitError",
    "RenderLimits",
    "RetainSandbox",
    "budget_paused",
    "check_context",
    "render_budget",
    "template_environment",
    "tick",
]
