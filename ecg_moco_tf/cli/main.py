"""``ecg-moco <command> [--flags]``: dispatch to one absl app per command.

Each command lives in its own module and defines only its own flags, so ``ecg-moco CMD --help``
lists just those. Every command accepts ``--flagfile=path`` (absl).

Usage mistakes end in one line on stderr and exit status 2: a bad flag (unknown, out of range,
missing, a flag file that does not exist), ``SystemExit("what to do")``, and the library's
``ValueError`` (its subclasses ``ManifestError``, ``RecordError``, ...), ``FileNotFoundError``
and ``FileExistsError``, whose messages name the problem. ``--verbosity=debug`` (or the
environment variable ``ECG_MOCO_DEBUG=1``) shows the traceback instead.
"""
import importlib
import os
import sys

import ecg_moco_tf

USAGE_ERRORS = (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError,
                NotADirectoryError)

# commands that need no TensorFlow (the others import it quietly first)
NO_TENSORFLOW = {"synth", "split", "ptbxl", "manifest", "report"}
COMMANDS = {
    "synth": "Generate the synthetic 12-lead cohort (WFDB + manifest), splits included.",
    "manifest": "Build a manifest from a folder of records (patient ids, labels from a CSV).",
    "split": "Assign patient-wise train1/valid1/train2/valid2/test splits to a manifest.",
    "validate": "Check every record of a manifest and print a table of problems.",
    "ptbxl": "Build a manifest (with splits from strat_fold) from a PTB-XL folder.",
    "convert": "Convert a manifest's records to sharded TFRecords for large data sets.",
    "augment-preview": "Draw one lead under each augmentation to a PNG (paper Figure 1).",
    "pretrain": "MoCo pretraining of the encoder on train1/valid1.",
    "finetune": "Fine-tune one experiment (LR sweep, lowest validation loss) and test it.",
    "reproduce": "The main job: pretrain, the paper's three experiments, report (make demo).",
    "explain": "Grad-CAM maps, 12-lead figures, lead x wave attribution, faithfulness.",
    "export": "Export a classifier to SavedModel and TFLite with parity checks and a card.",
    "predict": "Score records (file, folder or manifest) with a .keras/SavedModel/.tflite.",
    "report": "Publish a run's generated reports and figures to a docs folder.",
    "realism": "Compare a (synthetic) cohort with real ECGs: measures, figure, discriminator.",
}


def _usage():
    lines = ["usage: ecg-moco <command> [--flags] [--flagfile=FILE] | ecg-moco --version", "",
             "commands:"]
    lines += [f"  {name:<16}{doc}" for name, doc in COMMANDS.items()]
    lines += ["", "ecg-moco <command> --help shows the flags of one command."]
    return "\n".join(lines)


def run(argv=None):
    """Run one command; returns its exit status. The environment variables it sets for its own
    console (ECG_MOCO_DEBUG, TF_CPP_MIN_LOG_LEVEL) are restored afterwards, so in-process calls
    do not leak them into later ones."""
    saved = {k: os.environ.get(k) for k in ("ECG_MOCO_DEBUG", "TF_CPP_MIN_LOG_LEVEL")}
    try:
        return _run(argv)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(argv=None):
    argv = list(sys.argv if argv is None else argv)
    if len(argv) >= 2 and argv[1] in ("--version", "version"):
        from ecg_moco_tf import __version__

        print(f"ecg-moco {__version__}")
        return 0
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if len(argv) >= 2 else 2
    cmd = argv[1]
    if cmd not in COMMANDS:
        print(f"ecg-moco: unknown command '{cmd}'\n\n{_usage()}", file=sys.stderr)
        return 2
    rest = argv[2:]
    _quiet_console(cmd, debug="--verbosity=debug" in rest)
    module = importlib.import_module(f"ecg_moco_tf.cli.{cmd.replace('-', '_')}")
    if any(a in ("-h", "--help", "--helpshort", "-?") for a in rest):
        from ecg_moco_tf.cli.reference import command_help

        print(command_help(cmd))
        return 0
    from absl import app

    # absl's --verbosity takes integers; "debug" (what the error lines suggest) is its level 1
    rest = ["--verbosity=1" if a in ("--verbosity=debug", "-v=debug") else a for a in rest]
    try:
        app.run(_quiet_main(module.main), argv=[f"ecg-moco {cmd}"] + rest,
                flags_parser=_parse_flags)
    except SystemExit as e:
        if isinstance(e.code, str):                 # SystemExit("what to do"): a usage error
            print(f"ecg-moco {cmd}: {e.code}", file=sys.stderr)
            return 2
        return 0 if e.code is None else e.code
    except USAGE_ERRORS as e:                       # a missing file, a wrong manifest, ...
        if _debug():
            raise
        print(f"ecg-moco {cmd}: {as_flags(str(e), module.__name__)} (traceback: "
              "--verbosity=debug)", file=sys.stderr)
        return 2
    return 0


def _parse_flags(argv):
    """absl's flag parsing, a bad flag as SystemExit(message) (one line, exit 2)."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        msg = str(e).removeprefix("ERROR:: ")
        raise SystemExit(f"{msg} (see {argv[0]} --help)") from None


def _debug():
    """Tracebacks wanted: --verbosity=debug (= 1, or any -v >= 1, also from a flag file) or
    ECG_MOCO_DEBUG=1."""
    from absl import flags

    if os.environ.get("ECG_MOCO_DEBUG", "0").strip() not in ("", "0"):
        return True
    return flags.FLAGS.is_parsed() and flags.FLAGS.verbosity >= 1


def _quiet_console(cmd, debug):
    """No CUDA / oneDNN / absl start-up notices on the console unless --verbosity=debug (or the
    user set TF_CPP_MIN_LOG_LEVEL): TensorFlow's log level 3 (errors of TF ops still raise as
    Python exceptions) and its import with the native prints captured (replayed if it fails);
    :func:`_quiet_main` does absl's Python logging."""
    from ecg_moco_tf import console

    debug = debug or console.debug()
    if debug:
        os.environ["ECG_MOCO_DEBUG"] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = ecg_moco_tf._USER_TF_LOG_LEVEL or "0"
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = ecg_moco_tf._USER_TF_LOG_LEVEL or "3"
    if cmd not in NO_TENSORFLOW:
        console.import_tensorflow_quietly()
        console.hide_retracing_notices()


def _quiet_main(main):
    """``main`` with absl's Python logging at WARNING unless --verbosity is given (TensorFlow
    logs INFO lines through absl: SavedModel writing, "input name(s) ... renamed")."""
    def wrapped(argv):
        from absl import flags, logging

        from ecg_moco_tf import console

        if not flags.FLAGS["verbosity"].present and not console.debug():
            logging.set_verbosity(logging.WARNING)
        return main(argv)

    return wrapped


def as_flags(message, module):
    """A library error (which names Python arguments, ``batch_size=8``) as the command's
    user reads it: each ``name=`` that is a flag of the command becomes ``--name=``."""
    import re

    from absl import flags

    from ecg_moco_tf.cli.common import read_flag_spelling

    names = {f.name for f in flags.FLAGS.get_flags_for_module(module)}
    message = read_flag_spelling(message, names)
    return re.sub(r"(?<![-\w.])([a-z][a-z0-9_]*)=",
                  lambda m: f"--{m.group(1)}=" if m.group(1) in names else m.group(0), message)


def main():
    sys.exit(run())


if __name__ == "__main__":
    main()
