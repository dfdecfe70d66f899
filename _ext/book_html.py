"""Sphinx tweaks that make the rendered book work offline and keep its browser console clean.

- MathJax 3 is served from the book itself (``_static/mathjax``), copied from the PyPI package
  ``django-static-mathjax`` (MathJax 3.2.2, Apache-2.0), instead of from a CDN: the equations
  render without internet, and tests/test_browser.py can check that they do.
- sphinx-thebe 0.3.1 adds its inline ``const THEBE_JS_URL = ...`` script twice with Sphinx 7,
  which raises "Identifier 'THEBE_JS_URL' has already been declared" on every page; each
  script is kept once.
- The bibliography style ``book_author_year``: pybtex's ``plain`` entries (sorted by author,
  year, title) labelled the way the text cites them with ``bibtex_reference_style:
  author_year``, "Hinton et al., 2015", instead of numbers.
"""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle

MATHJAX_BUNDLE = "tex-mml-chtml.js"
# What the bundle loads at run time: fonts, TeX extensions (autoloaded), accessibility and menu.
MATHJAX_RUNTIME = ("input", "output/chtml", "a11y", "ui", "sre", "adaptors")


def _mathjax_source() -> Path:
    try:
        import mathjax  # the django-static-mathjax package: MathJax's files, nothing else used
    except ImportError:
        raise ImportError(
            "the book serves MathJax itself: pip install django-static-mathjax (see pyproject's book extra)"
        ) from None
    return Path(mathjax.__file__).parent / "static" / "mathjax"


def _use_local_mathjax(app, config):
    _mathjax_source()  # fail early, before a build that would render no equation
    config.mathjax_path = f"mathjax/{MATHJAX_BUNDLE}"


def _copy_mathjax(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    source = _mathjax_source()
    target = Path(app.outdir) / "_static" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "es5" / MATHJAX_BUNDLE, target / MATHJAX_BUNDLE)
    shutil.copy2(source / "LICENSE", target / "LICENSE")
    for part in MATHJAX_RUNTIME:
        shutil.copytree(source / "es5" / part, target / part, dirs_exist_ok=True)


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # An inline script's filename is None or "" depending on who added it.
        key = (getattr(script, "filename", script) or "", tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def _surname(person) -> str:
    """"van den Oord", "Schölkopf": the name a citation shows, LaTeX accents decoded."""
    return Text.from_latex(" ".join(person.prelast_names + person.last_names)).render_as("text")


def author_year_label(entry) -> str:
    """The label sphinxcontrib-bibtex's author_year citations show: "A", "A and B" or "A et al.", then the year."""
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_surname(person) for person in people]
    if not names:
        who = entry.fields.get("title", entry.key)
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabelStyle(BaseLabelStyle):
    """Author-year labels; labels that two entries share get a, b, ... after the year."""

    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [author_year_label(entry) for entry in entries]
        counts, seen = Counter(labels), Counter()
        for label in labels:
            if counts[label] > 1:
                seen[label] += 1
                yield f"{label}{chr(ord('a') + seen[label] - 1)}"
            else:
                yield label


class AuthorYearStyle(PlainStyle):
    default_label_style = AuthorYearLabelStyle


register_plugin("pybtex.style.formatting", "book_author_year", AuthorYearStyle)


def setup(app):
    app.connect("config-inited", _use_local_mathjax)
    app.connect("build-finished", _copy_mathjax)
    app.connect("html-page-context", _drop_duplicate_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
