"""The documentation cannot drift from the code: the site builds with --strict (broken links
fail), its CLI pages are what `--help` prints, every `ecg-moco` command shown in README.md and
docs/ names a real command, flags that command defines and flag files that exist, and
`ecg-moco report` publishes a run's pages with every file they link."""
import glob
import importlib
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.test_cli_errors import cli  # noqa: F401 (fixture)

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_site_builds_strict(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                        str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "site" / "cli" / "predict.html").exists()
    api = (tmp_path / "site" / "api.html").read_text()
    assert "predict_records" in api and "read_record" in api      # from the docstrings
    assert ":func:" not in api and ":class:" not in api           # Sphinx roles shown as code


def test_cli_pages_are_the_help_of_each_command(cli):  # noqa: F811
    from ecg_moco_tf.cli.main import COMMANDS
    from ecg_moco_tf.cli.reference import markdown_pages

    pages = markdown_pages()
    assert set(pages) == set(COMMANDS)
    for cmd in ("predict", "split", "report"):
        rc, out, _ = cli(cmd, "--help")
        assert rc == 0 and out.strip() in pages[cmd], cmd
    assert "--max_p2p_mv" in pages["validate"] and "--threshold" in pages["predict"]


def _shown_commands():
    """(file, command, [(flag, value)]) of every `ecg-moco CMD ...` in README.md, docs/*.md,
    experiments/README.md and saved_models/README.md: lines of code blocks (with their `\`
    continuation lines) and inline code spans (which may wrap over lines)."""
    files = [os.path.join(ROOT, f) for f in ("README.md", "experiments/README.md",
                                            "saved_models/README.md")]
    files += glob.glob(os.path.join(ROOT, "docs", "*.md"))
    shown = []
    for path in files:
        text = re.sub(r"\\\n\s*", " ", open(path).read())
        blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
        prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
        spans = [m.replace("\n", " ") for m in re.findall(r"`([^`]+)`", prose)]
        for chunk in [line for b in blocks for line in b.splitlines()] + spans:
            for m in re.finditer(r"ecg-moco ([a-z][a-z-]*)((?: +[^\s|#]+)*)", chunk):
                args = re.findall(r"--([A-Za-z0-9_-]+)(?:=(\S+))?", m.group(2))
                shown.append((os.path.basename(path), m.group(1), args))
    return shown


def _flags_of(cmd):
    from absl import flags

    base = set(flags.FLAGS)
    name = f"ecg_moco_tf.cli.{cmd.replace('-', '_')}"
    try:
        importlib.import_module(name)
        return set(flags.FLAGS)
    finally:
        for f in set(flags.FLAGS) - base:
            delattr(flags.FLAGS, f)
        sys.modules.pop(name, None)


def test_every_command_shown_in_the_docs_exists_with_its_flags():
    from ecg_moco_tf.cli.main import COMMANDS

    shown = _shown_commands()
    assert len(shown) > 60                      # the docs show many; the regex finds them
    known = {}
    for where, cmd, args in shown:
        if cmd == "tf":                         # prose like "ecg-moco-tf"
            continue
        assert cmd in COMMANDS, f"{where}: ecg-moco {cmd}"
        known.setdefault(cmd, _flags_of(cmd))
        for flag, value in args:
            bare = flag[2:] if flag.startswith("no") and flag[2:] in known[cmd] else flag
            assert bare in known[cmd] | {"help", "version", "flagfile"}, f"{where}: ecg-moco {cmd} --{flag}"
            if flag == "flagfile":
                assert os.path.exists(os.path.join(ROOT, value)), f"{where}: {value}"


def test_report_publishes_a_run_and_refuses_a_broken_one(cli, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    (run / "explain").mkdir(parents=True)
    (run / "report.md").write_text("# r\n![roc](roc.png) [s](explain/summary.md)\n")
    (run / "roc.png").write_bytes(b"png")
    (run / "results.json").write_text("{}")
    (run / "explain" / "summary.md").write_text("![m](mask.png)\n")
    (run / "encoder.keras").write_bytes(b"big")           # not linked: not copied
    out = tmp_path / "docs" / "demo"
    rc, stdout, err = cli("report", f"--run={run}", f"--out={out}")
    assert rc == 2 and "explain/summary.md links mask.png" in err and not out.exists()
    (run / "explain" / "mask.png").write_bytes(b"png")
    rc, stdout, err = cli("report", f"--run={run}", f"--out={out}")
    assert rc == 0, err
    got = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out)
                 for f in fs)
    assert got == ["explain/mask.png", "explain/summary.md", "report.md", "results.json",
                   "roc.png"]
    assert (out / "report.md").read_text() == (run / "report.md").read_text()
    rc, _, err = cli("report", f"--run={run}", f"--out={out}")
    assert rc == 2 and "--overwrite" in err
    rc, _, err = cli("report", f"--run={run}", f"--out={tmp_path / 'docs'}", "--overwrite")
    assert rc == 2 and "holds no published report" in err      # docs/ holds other results
    rc, _, err = cli("report", f"--run={run}", f"--out={run / 'pub'}")
    assert rc == 2 and "inside it" in err
    shutil.rmtree(run / "explain")
    rc, _, err = cli("report", f"--run={run}", f"--out={out}", "--overwrite")
    assert rc == 2 and "links explain/summary.md" in err
    assert (out / "explain" / "mask.png").exists()           # nothing replaced on failure


def test_published_results_pages_link_only_files_they_have():
    pages = glob.glob(os.path.join(ROOT, "docs", "results", "**", "*.md"), recursive=True)
    assert pages
    for page in pages:
        for link in re.findall(r"\]\(([^)\s#]+)", open(page).read()):
            if not re.match(r"[a-z]+://", link):
                assert os.path.exists(os.path.join(os.path.dirname(page), link)), (page, link)
