"""MkDocs hooks: pages generated at build time, never typed by hand. The home page is
README.md (its links made relative to docs/), the changelog is CHANGELOG.md, and the CLI
reference is one page per command from ``ecg-moco <command> --help``
(:mod:`ecg_moco_tf.cli.reference`)."""
import os
import re

from mkdocs.structure.files import File

ROOT = os.path.dirname(os.path.abspath(__file__))
_PAGES = {}


def _cli_pages():
    if not _PAGES:
        from ecg_moco_tf.cli.reference import markdown_pages

        _PAGES.update(markdown_pages())
    return _PAGES


def on_config(config):
    cli = [{f"ecg-moco {cmd}": f"cli/{cmd}.md"} for cmd in _cli_pages()]
    for entry in config["nav"]:
        for section in entry.values():
            if isinstance(section, list):
                for i, item in enumerate(section):
                    if item == {"CLI": "cli/"}:
                        section[i:i + 1] = cli
    return config


def on_files(files, config):
    readme = open(os.path.join(ROOT, "README.md")).read()
    readme = re.sub(r"\]\(docs/", "](", readme).replace("](CHANGELOG.md)", "](changelog.md)")
    generated = {"index.md": readme,
                 "changelog.md": open(os.path.join(ROOT, "CHANGELOG.md")).read()}
    generated.update({f"cli/{cmd}.md": page for cmd, page in _cli_pages().items()})
    for uri, text in generated.items():
        files.append(File.generated(config, uri, content=text))
    return files


def on_page_content(html, page, config, files):
    """Docstrings use Sphinx roles (``:func:`~pkg.mod.name```), which Markdown leaves as
    text: shown as the code name they refer to."""
    def name(m):
        return m.group(2).split(".")[-1] if m.group(1) else m.group(2)

    return re.sub(r":(?:func|class|mod|meth|data|attr|exc):<code>(~?)\.?([^<]+)</code>",
                  lambda m: f"<code>{name(m)}</code>", html)
