"""Render a campaign for one recipient: Jinja (sandboxed, StrictUndefined, autoescape) -> MJML -> HTML + text.

Every template part (body, subject, preheader, text part) runs in the one sandboxed, bounded
environment of :mod:`campaigns.sandbox`, on a context checked to be plain data; a runaway template
ends with a :class:`~campaigns.errors.RenderError` (a TemplateError) naming its file and line.

The one module that imports ``mjml`` (mjml-python, the Rust MRML port). A :class:`CampaignRenderer` is
built once per campaign and called per recipient; rendering is a pure function of the context dict,
which is plain data (the template can never reach the database).

Compile once, execute per recipient
-----------------------------------
Running Jinja and MJML for every recipient costs most of the time of a send. The renderer instead
renders the template once per *shape* of context with every truthy leaf value replaced by a marker
(``[[slotN]]``), runs MJML on that, and keeps the HTML as a format string. Per recipient it only
escapes the real leaf values and fills them in. The shape key is what the template may branch on:
list lengths, which leaves are empty/None/False, and the real values of leaves the template was
seen to *use* rather than print (compared, sliced, passed to ``range``...; those raise
``_Structural`` on a marker and are kept real from then on). Each new shape is checked once against
a full Jinja+MJML render of the same recipient; a shape that does not match, a template that cannot
be compiled, or more than :data:`MAX_SHAPES` shapes fall back to the full render (always correct,
slower). ``renderer.stats`` says which path was taken.

``mjml-python`` does not inline ``<mj-style inline="inline">`` CSS as the node mjml does: such blocks
are cut out of the MJML and inlined with css-inline, on the compiled shape (not per recipient).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox
import mjml
from markupsafe import Markup, escape

try:
    from markupsafe._speedups import _escape_inner
except ImportError:  # pragma: no cover - pure-Python markupsafe
    from markupsafe._native import _escape_inner

from campaigns import sandbox
from campaigns.config import Settings
from campaigns.definition import CampaignDefinition, split_front_matter
from campaigns.errors import RenderError, TemplateError
from campaigns.links import add_utm
from campaigns.plaintext import html_to_text
from campaigns.sandbox import (
    RenderLimitError,
    RenderLimits,
    budget_paused,
    check_context,
    render_budget,
    template_environment,
)

MAX_SHAPES = 64
_MARK = "[[slot{}]]"
_MARK_RE = re.compile(r"\[\[slot(\d+)\]\]")
_MJ_INLINE_RE = re.compile(r"<mj-style\s+inline=\"inline\"\s*>(.*?)</mj-style>", re.S)
_DEBUG_ESCAPE_RE = re.compile(r"\\u\{([0-9a-fA-F]{1,6})\}")
_TRUTHY = object()


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    preheader: str
    html: str
    text: str


@dataclass
class RenderStats:
    compiled: int = 0  # recipients served from a compiled shape
    full: int = 0  # recipients rendered with Jinja + MJML
    shapes: int = 0
    fallback_reason: str | None = None


class _Structural(Exception):
    """A marker was used as data (compared, sliced...): its path must stay a real value."""

    def __init__(self, path: str) -> None:
        self.path = path


def _structural(name: str) -> Any:
    def method(self: _Slot, *args: Any, **kwargs: Any) -> Any:
        raise _Structural(self.path)

    method.__name__ = name
    return method


class _Slot(str):
    """A marker standing for one leaf value; any use other than printing marks its path structural."""

    path: str

    def __new__(cls, index: int, path: str) -> _Slot:
        obj = super().__new__(cls, _MARK.format(index))
        obj.path = path
        return obj

    def __bool__(self) -> bool:
        return True

    __hash__ = str.__hash__


for _name in (
    "__eq__ __ne__ __lt__ __le__ __gt__ __ge__ __len__ __iter__ __getitem__ __contains__ __index__ __int__ "
    "__float__ __mul__ __rmul__ __mod__ upper lower title capitalize casefold swapcase strip lstrip rstrip "
    "replace split rsplit splitlines startswith endswith find rfind index rindex count format center ljust "
    "rjust zfill partition rpartition encode isdigit isalpha isnumeric isdecimal isspace isupper islower"
).split():
    setattr(_Slot, _name, _structural(_name))


def _walk(value: Any, path: str, structural: set[str], shape: list[Any], leaves: list[Any]) -> None:
    """Append ``value``'s shape and its truthy printable leaves (in the order :func:`_slotted` numbers them).

    Hot path (runs per recipient): leaves of a dict are handled inline rather than by recursion.
    """
    if type(value) is dict:
        for key, item in value.items():
            shape.append(key)
            sub = path + "." + key
            kind = type(item)
            if kind is str or kind is int or kind is float:
                if item and sub not in structural:
                    shape.append(_TRUTHY)
                    leaves.append(item)
                else:
                    shape.append((kind, item))
            elif item is None or kind is bool:
                shape.append(item)
            else:
                _walk(item, sub, structural, shape, leaves)
    elif isinstance(value, list | tuple):
        shape.append(len(value))
        sub = path + ".*"
        for item in value:
            _walk(item, sub, structural, shape, leaves)
    elif isinstance(value, dict):
        _walk(dict(value), path, structural, shape, leaves)
    elif value is None or value is True or value is False or not value or path in structural:
        shape.append((type(value), value) if _hashable(value) else (type(value), repr(value)))
    elif isinstance(value, str | int | float):
        shape.append(_TRUTHY)
        leaves.append(value)
    else:  # dates and other objects: the template may call methods on them; keep them real
        structural.add(path)
        shape.append((type(value), repr(value)))


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _slotted(value: Any, path: str, structural: set[str], counter: list[int]) -> Any:
    """A copy of the context with every truthy printable leaf replaced by a marker."""
    if isinstance(value, dict):
        return {k: _slotted(v, f"{path}.{k}", structural, counter) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_slotted(v, path + ".*", structural, counter) for v in value]
    if value is None or value is True or value is False or not value or path in structural:
        return value
    if isinstance(value, str | int | float):
        counter[0] += 1
        return _Slot(counter[0] - 1, path)
    return value


class _Filled:
    """A compiled output: literal pieces with slot numbers between them."""

    __slots__ = ("pieces", "slots")

    def __init__(self, source: str) -> None:
        split = _MARK_RE.split(source)
        self.pieces = split[0::2]
        self.slots = [int(n) for n in split[1::2]]

    def fill(self, values: list[str]) -> str:
        out = [""] * (2 * len(self.pieces) - 1)
        out[0::2] = self.pieces
        out[1::2] = [values[i] for i in self.slots]
        return "".join(out)


@dataclass
class _Shape:
    html: _Filled | None  # None: this shape renders in full
    text: _Filled | None


@dataclass
class _CompileState:
    structural: set[str] = field(default_factory=set)
    shapes: dict[tuple[Any, ...], _Shape] = field(default_factory=dict)
    disabled: str | None = None


class _TemplateLoader(jinja2.FileSystemLoader):
    """Loads from the templates directory; a campaign's front matter reads as blank lines, so
    template line numbers are file line numbers."""

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        source, filename, uptodate = super().get_source(environment, template)
        if source.startswith("---"):
            try:
                fm, _, body, body_line = split_front_matter(Path(filename), source)
            except TemplateError:
                return source, filename, uptodate
            source = "\n" * (body_line - 1) + body
        return source, filename, uptodate


def _environment(templates_dir: Path, autoescape: bool, limits: RenderLimits) -> jinja2.Environment:
    """The sandboxed, bounded environment (campaigns/sandbox.py) loading from the templates directory."""
    return template_environment(_TemplateLoader(str(templates_dir)), autoescape=autoescape, limits=limits)


def _error_line(exc: BaseException) -> tuple[str | None, int | None]:
    """The innermost template frame of a Jinja runtime error (Jinja rewrites tracebacks to templates)."""
    where: tuple[str | None, int | None] = (None, None)
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith((".mjml", ".txt", ".html")) or filename == "<template>":
            where = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return where


class CampaignRenderer:
    """Compiles one campaign's templates; :meth:`render` makes one recipient's email.

    Thread-safe: shapes are compiled under a lock, filled without one.
    """

    def __init__(
        self,
        definition: CampaignDefinition,
        settings: Settings,
        *,
        compile: bool = True,
        limits: RenderLimits | None = None,
    ) -> None:
        self.definition = definition
        self.settings = settings
        #: the sandbox's bounds (None: campaigns.sandbox.DEFAULT_LIMITS, read now)
        self.limits = limits = limits or sandbox.DEFAULT_LIMITS
        self.templates_dir = definition.path.parent.parent
        self.stats = RenderStats()
        self._compile = compile
        self._state = _CompileState()
        self._lock = threading.Lock()
        self._html_env = _environment(self.templates_dir, autoescape=True, limits=limits)
        self._text_env = _environment(self.templates_dir, autoescape=False, limits=limits)
        for env in (self._html_env, self._text_env):
            env.filters["utm"] = self._utm_filter
        self._name = f"emails/{definition.path.name}"
        self._html_template = self._load(self._html_env, self._name)
        self._text_template = (
            self._load(self._text_env, f"emails/{definition.text_path.name}")
            if definition.text_path.exists()
            else None
        )
        self._subject = self._from_string(definition.subject, "subject")
        self._preheader = self._from_string(definition.preheader, "preheader")

    # ------------------------------------------------------------------ compiling

    def _load(self, env: jinja2.Environment, name: str) -> jinja2.Template:
        try:
            return env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"template syntax error: {exc.message}", template=exc.filename or name, line=exc.lineno
            ) from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(
                f"template {exc.name!r} not found under {self.templates_dir}", template=name
            ) from None

    def _from_string(self, source: str, key: str) -> jinja2.Template:
        line = self.definition.lines.get(key)
        try:
            return self._text_env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"{key}: template syntax error: {exc.message}", template=str(self.definition.path), line=line
            ) from None

    def _utm_filter(self, url: Any) -> Any:
        if isinstance(url, _Slot):
            raise _Structural(url.path)
        return add_utm(str(url), self.settings, self.definition.name)

    # ------------------------------------------------------------------ rendering

    def render(self, context: dict[str, Any]) -> RenderedEmail:
        """One recipient's email. RenderError names the template, line, variable and customer.

        TemplateError when ``context`` is not plain data; RenderError when a bound of
        :mod:`campaigns.sandbox` ends the render (one time budget for all parts of the message).
        """
        check_context(context, str(self.definition.path))
        with render_budget(self.limits):
            return self._render(context)

    def _render(self, context: dict[str, Any]) -> RenderedEmail:
        subject = " ".join(self._run(self._subject, context, "subject").split())
        preheader = " ".join(self._run(self._preheader, context, "preheader").split())
        ctx = dict(context, subject=subject, preheader=preheader)
        html, text = self._render_html(ctx)
        return RenderedEmail(subject=subject, preheader=preheader, html=html, text=text)

    def render_full(self, context: dict[str, Any]) -> RenderedEmail:
        """The same email rendered without compiled shapes (Jinja + MJML for this recipient)."""
        check_context(context, str(self.definition.path))
        with render_budget(self.limits):
            return self._render_full(context)

    def _render_full(self, context: dict[str, Any]) -> RenderedEmail:
        subject = " ".join(self._run(self._subject, context, "subject").split())
        preheader = " ".join(self._run(self._preheader, context, "preheader").split())
        ctx = dict(context, subject=subject, preheader=preheader)
        html = self._full_html(ctx)
        text = self._full_text(ctx, html)
        return RenderedEmail(subject=subject, preheader=preheader, html=html, text=text)

    def _run(self, template: jinja2.Template, context: dict[str, Any], what: str) -> str:
        try:
            return template.render(context)
        except jinja2.UndefinedError as exc:
            raise self._render_error(exc, what, context) from None
        except _Structural:
            raise
        except (
            jinja2.TemplateError,
            TypeError,
            ValueError,
            AttributeError,
            KeyError,
            IndexError,
            ArithmeticError,
            RecursionError,
        ) as exc:
            raise self._render_error(exc, what, context) from None

    def _render_error(self, exc: BaseException, what: str, context: dict[str, Any]) -> RenderError:
        filename, line = _error_line(exc)
        if isinstance(exc, RenderLimitError) and exc.template:
            filename, line = exc.template, exc.line or line
        if what in ("subject", "preheader") or filename == "<template>":
            filename, line = str(self.definition.path), self.definition.lines.get(what)
        customer = context.get("customer")
        who = (
            f" for customer {customer.get('id')}"
            if isinstance(customer, dict) and customer.get("id") is not None
            else ""
        )
        kind = (
            "undefined variable"
            if isinstance(exc, jinja2.UndefinedError)
            else "over a limit"
            if isinstance(exc, RenderLimitError)
            else "not allowed in a template"
            if isinstance(exc, jinja2.sandbox.SecurityError)
            else type(exc).__name__
        )
        if isinstance(exc, jinja2.TemplateNotFound):
            return RenderError(
                f"included template {exc.name!r} not found under {self.templates_dir}{who}",
                template=filename or self._name,
                line=line,
            )
        return RenderError(f"{what}: {kind}: {exc}{who}", template=filename or self._name, line=line)

    def _mjml(self, source: str) -> str:
        css = "\n".join(_MJ_INLINE_RE.findall(source))
        if css:
            source = _MJ_INLINE_RE.sub("", source)
        try:
            with budget_paused():
                html = mjml.mjml2html(source, disable_comments=True)
        except ValueError as exc:
            raise TemplateError(f"MJML error: {exc}", template=str(self.definition.path)) from None
        # MRML writes some characters in attributes as Rust escapes ("\u{200f}"): put them back
        if "\\u{" in html:
            html = _DEBUG_ESCAPE_RE.sub(lambda m: str(escape(chr(int(m.group(1), 16)))), html)
        if css:
            import css_inline

            inliner = css_inline.CSSInliner(
                extra_css=css, inline_style_tags=False, keep_style_tags=True, load_remote_stylesheets=False
            )
            html = inliner.inline(html)
        return html

    def _full_html(self, ctx: dict[str, Any]) -> str:
        return self._mjml(self._run(self._html_template, ctx, "html"))

    def _render_html(self, ctx: dict[str, Any]) -> tuple[str, str]:
        state = self._state
        if not self._compile or state.disabled:
            return self._fallback(ctx)
        shape_parts: list[Any] = []
        leaves: list[Any] = []
        _walk(ctx, "", state.structural, shape_parts, leaves)
        key = tuple(shape_parts)
        shape = state.shapes.get(key)
        if shape is None:
            with self._lock:
                shape = state.shapes.get(key) or self._compile_shape(ctx)
                if state.disabled:
                    return self._fallback(ctx)
                # structural paths may have grown while compiling: recompute the key
                shape_parts, leaves = [], []
                _walk(ctx, "", state.structural, shape_parts, leaves)
                key = tuple(shape_parts)
                state.shapes[key] = shape
                self.stats.shapes = len(state.shapes)
        if shape.html is None or shape.text is None:
            return self._fallback(ctx)
        self.stats.compiled += 1
        return shape.html.fill(_escaped(leaves)), shape.text.fill([str(v) for v in leaves])

    def _fallback(self, ctx: dict[str, Any]) -> tuple[str, str]:
        self.stats.full += 1
        html = self._full_html(ctx)
        return html, self._full_text(ctx, html)

    def _full_text(self, ctx: dict[str, Any], html: str) -> str:
        if self._text_template is not None:
            return self._run(self._text_template, ctx, "text")
        return html_to_text(html)

    def _compile_shape(self, ctx: dict[str, Any]) -> _Shape:
        """Compile the shape of ``ctx`` (caller holds the lock), verified against a full render."""
        state = self._state
        if len(state.shapes) >= MAX_SHAPES:
            state.disabled = f"more than {MAX_SHAPES} context shapes"
            self.stats.fallback_reason = state.disabled
            return _Shape(None, None)
        for _ in range(50):
            slotted = _slotted(ctx, "", state.structural, [0])
            try:
                source = self._html_template.render(slotted)
                text_source = self._text_template.render(slotted) if self._text_template is not None else None
                break
            except _Structural as exc:
                state.structural.add(exc.path)
            except RenderLimitError as exc:  # the message's time budget is spent: report where
                raise self._render_error(exc, "html", ctx) from None
            except Exception as exc:  # noqa: BLE001 - any failure here only means "cannot compile"
                # the real render below reports genuine template errors with their line
                self._fallback(ctx)
                state.disabled = f"template cannot be compiled ({type(exc).__name__}: {exc})"
                self.stats.fallback_reason = state.disabled
                return _Shape(None, None)
        else:
            state.disabled = "too many structural values"
            self.stats.fallback_reason = state.disabled
            return _Shape(None, None)
        html = self._mjml(source)
        shape = _Shape(_Filled(html), _Filled(text_source if text_source is not None else html_to_text(html)))
        leaves: list[Any] = []
        _walk(ctx, "", state.structural, [], leaves)
        try:
            filled_html = shape.html.fill(_escaped(leaves))  # type: ignore[union-attr]
            filled_text = shape.text.fill([str(v) for v in leaves])  # type: ignore[union-attr]
        except IndexError:
            filled_html = filled_text = None
        expected_html = self._full_html(ctx)
        if filled_html != expected_html or filled_text != self._full_text(ctx, expected_html):
            self.stats.fallback_reason = "a context shape did not match its full render"
            return _Shape(None, None)
        return shape


def _escaped(values: list[Any]) -> list[str]:
    """HTML-escaped leaf values, exactly as Jinja's autoescape writes them."""
    return [_escape_inner(v) if type(v) is str else str(escape(v)) for v in values]


def render_campaign(
    definition: CampaignDefinition, settings: Settings, context: dict[str, Any]
) -> RenderedEmail:
    """One-off render (preview, CLI); senders keep a :class:`CampaignRenderer` per campaign."""
    return CampaignRenderer(definition, settings).render(context)


__all__ = ["CampaignRenderer", "Markup", "RenderStats", "RenderedEmail", "render_campaign"]
