"""Campaign rendering for the preview inside Jinja's sandbox.

The preview renders templates that someone is editing right now; a template must not be able to
reach Python internals (``{{ ''.__class__.__mro__ }}``, ``obj.__globals__`` ...). The renderer here is
the normal :class:`~campaigns.render.CampaignRenderer` (same loader, filters, MJML and text steps, so
the output is the email a send produces) with its Jinja environments swapped for
:class:`jinja2.sandbox.ImmutableSandboxedEnvironment`. An unsafe access raises ``SecurityError``,
which the renderer reports as a :class:`~campaigns.errors.RenderError` naming the template line.
"""

from __future__ import annotations

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition
from campaigns.render import CampaignRenderer


class SandboxedRenderer(CampaignRenderer):
    """A :class:`CampaignRenderer` whose templates run sandboxed (always the full render path).

    Raises TemplateError like its base for syntax errors and missing includes.
    """

    def __init__(self, definition: CampaignDefinition, settings: Settings) -> None:
        # compile=False: the preview renders one recipient, so the compiled-shape cache buys nothing
        super().__init__(definition, settings, compile=False)
        loader = self._html_env.loader
        for attr, autoescape in (("_html_env", True), ("_text_env", False)):
            env = ImmutableSandboxedEnvironment(
                loader=loader,
                undefined=jinja2.StrictUndefined,
                autoescape=autoescape,
                keep_trailing_newline=True,
                auto_reload=False,
            )
            env.filters["utm"] = self._utm_filter
            setattr(self, attr, env)
        self._html_template = self._load(self._html_env, self._name)
        self._text_template = (
            self._load(self._text_env, f"emails/{definition.text_path.name}")
            if definition.text_path.exists()
            else None
        )
        self._subject = self._from_string(definition.subject, "subject")
        self._preheader = self._from_string(definition.preheader, "preheader")
