"""The command-line reference, generated from the commands themselves: the text of
``ecg-moco <command> --help`` (:func:`command_help`) and one Markdown page per command
(:func:`markdown_pages`, what the documentation site shows), so the two cannot differ."""
import importlib
import sys


def command_help(cmd):
    """What ``ecg-moco <cmd> --help`` prints: the summary, the module's docstring and its
    flags with their help and defaults."""
    from absl import flags

    from .main import COMMANDS

    module = importlib.import_module(f"ecg_moco_tf.cli.{cmd.replace('-', '_')}")
    return "\n".join([f"ecg-moco {cmd}: {COMMANDS[cmd]}", "",
                      (module.__doc__ or "").strip(), "",
                      flags.FLAGS.module_help(module.__name__),
                      "  --flagfile: read flags from a file (one --flag=value per line)"])


def markdown_pages():
    """{command: Markdown page} for every command. Each command's flags are defined in a
    fresh absl registry and removed afterwards (commands share flag names)."""
    from absl import flags

    from .main import COMMANDS

    pages = {}
    for cmd in COMMANDS:
        base = set(flags.FLAGS)
        try:
            text = command_help(cmd)
        finally:
            for name in set(flags.FLAGS) - base:
                delattr(flags.FLAGS, name)
            sys.modules.pop(f"ecg_moco_tf.cli.{cmd.replace('-', '_')}", None)
        pages[cmd] = (f"# ecg-moco {cmd}\n\n{COMMANDS[cmd]}\n\nGenerated from `ecg-moco {cmd} "
                      f"--help`; every command also takes `--flagfile=FILE`.\n\n"
                      f"```text\n{text}\n```\n")
    return pages
