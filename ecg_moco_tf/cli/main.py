"""``ecg-moco <command> [--flags]``: dispatch to one absl app per command.

Each command lives in its own module and defines only its own flags, so ``ecg-moco CMD --help``
lists just those. Every command accepts ``--flagfile=path`` (absl).
"""
import importlib
import sys

from ecg_moco_tf.data.manifest import ManifestError

COMMANDS = {
    "synth": "Generate the synthetic 12-lead cohort (WFDB + manifest), splits included.",
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
    "realism": "Compare a (synthetic) cohort with real ECGs: measures, figure, discriminator.",
}


def _usage():
    lines = ["usage: ecg-moco <command> [--flags] [--flagfile=FILE]", "", "commands:"]
    lines += [f"  {name:<16}{doc}" for name, doc in COMMANDS.items()]
    lines += ["", "ecg-moco <command> --help shows the flags of one command."]
    return "\n".join(lines)


def run(argv=None):
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if len(argv) >= 2 else 2
    cmd = argv[1]
    if cmd not in COMMANDS:
        print(f"ecg-moco: unknown command '{cmd}'\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"ecg_moco_tf.cli.{cmd.replace('-', '_')}")
    rest = argv[2:]
    if any(a in ("-h", "--help", "--helpshort", "-?") for a in rest):
        from absl import flags

        print(f"ecg-moco {cmd}: {COMMANDS[cmd]}\n")
        print((module.__doc__ or "").strip() + "\n")
        print(flags.FLAGS.module_help(module.__name__))
        print("  --flagfile: read flags from a file (one --flag=value per line)")
        return 0
    from absl import app

    try:
        app.run(module.main, argv=[f"ecg-moco {cmd}"] + rest)
    except SystemExit as e:
        if isinstance(e.code, str):                 # SystemExit("what to do"): a usage error
            print(f"ecg-moco {cmd}: {e.code}", file=sys.stderr)
            return 2
        return 0 if e.code is None else e.code
    except (FileNotFoundError, ManifestError) as e:  # a missing file or a wrong manifest
        if "--verbosity=debug" in rest:
            raise
        print(f"ecg-moco {cmd}: {e} (traceback: --verbosity=debug)", file=sys.stderr)
        return 2
    return 0


def main():
    sys.exit(run())


if __name__ == "__main__":
    main()
