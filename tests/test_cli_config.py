"""The training commands build their settings from the stage configs (issue 15, section 3):
flag defaults are the dataclasses' defaults, every flag file parses for its command, a
setting has one name in every command that has it (earlier names are aliases), and
``--verbose`` shows Keras' progress bar within an epoch."""
import contextlib
import dataclasses
import glob
import importlib
import os
import sys

import pytest
from absl import flags

from ecg_moco_tf.cli import common
from ecg_moco_tf.training.finetune import FinetuneConfig
from ecg_moco_tf.training.pretrain import PretrainConfig
from tests.test_cli_errors import TINY_FLAGS, cli, records  # noqa: F401 (fixtures)

REPO = os.path.join(os.path.dirname(__file__), "..")
REQUIRED = {"finetune": ["--manifest=m.csv"], "predict": ["--model=m.keras", "--input=x"],
            "explain": ["--model=m.keras", "--input=x"], "ptbxl": ["--ptbxl_root=p"]}


@contextlib.contextmanager
def parsed(cmd, *args):
    """Command ``cmd``'s flags (defined in this process) parsed from ``args`` plus the flags
    it requires; yields the names it defined (aliases included). Dropped afterwards."""
    base = set(flags.FLAGS)
    module = f"ecg_moco_tf.cli.{cmd}"
    sys.modules.pop(module, None)
    importlib.import_module(module)
    try:
        flags.FLAGS(["ecg-moco", *REQUIRED.get(cmd, []), *args])
        yield set(flags.FLAGS) - base
    finally:
        for name in set(flags.FLAGS) - base:
            delattr(flags.FLAGS, name)
        sys.modules.pop(module, None)
        flags.FLAGS.unparse_flags()


def _is_alias(name):
    return flags.FLAGS[name].help.startswith("Alias for --")


def _configs(cmd):
    """The stage configs ``cmd`` builds from its parsed flags."""
    if cmd == "pretrain":
        return {"pretrain": common.pretrain_config()}
    if cmd == "finetune":
        return {"finetune": common.finetune_config()}
    return {"pretrain": common.pretrain_config(common.REPRODUCE_PRETRAIN_PREFIXED),
            "finetune": common.finetune_config()}


DEFAULTS = {"pretrain": PretrainConfig(), "finetune": FinetuneConfig()}


@pytest.mark.parametrize("cmd", ["pretrain", "finetune", "reproduce"])
def test_every_flag_default_is_the_config_default(cmd):
    with parsed(cmd):
        configs = _configs(cmd)
    for stage, cfg in configs.items():
        got, want = dataclasses.asdict(cfg), dataclasses.asdict(DEFAULTS[stage])
        assert {k: got[k] for k in got if got[k] != want[k]} == {}, f"{cmd} -> {stage}"


def test_reproduce_fills_both_configs_from_its_flags():
    """Pretraining's optimizer flags are pretrain_-prefixed there; shared ones (--cache,
    --verbose) set both stages; list and enum flags arrive with the fields' types."""
    with parsed("reproduce", "--pretrain_epochs=3", "--epochs=7", "--moco_momentum=0.9",
                "--moco_version=1", "--pretrain_lr_schedule=cosine",
                "--augmentations=GaussianNoise", "--learning_rates=1e-3,1e-4",
                "--freeze_encoder", "--nocache", "--verbose", "--seed=5"):
        c = _configs("reproduce")
    pt, ft = c["pretrain"], c["finetune"]
    assert (pt.epochs, pt.momentum, pt.version, pt.lr_schedule, pt.augmentations) == (
        3, 0.9, 1, "cosine", ("GaussianNoise",))
    assert (ft.epochs, ft.learning_rates, ft.freeze_encoder) == (7, (1e-3, 1e-4), True)
    assert (pt.cache, ft.cache, pt.verbose, ft.verbose, pt.seed, ft.seed) == (
        False, False, 1, 1, 5, 5)
    assert DEFAULTS["pretrain"].verbose == DEFAULTS["finetune"].verbose == 2   # one line/epoch


# which command reads each flag file (a new file: add it here)
FLAGFILES = {"baseline_full_labels": ["finetune"], "baseline_unpretrained": ["finetune"],
             "proposed": ["finetune"], "demo": ["reproduce"],
             "paper_protocol": ["reproduce", "finetune"], "ptbxl_mi": ["reproduce"],
             "ptbxl_mi_crossfold": ["reproduce"],
             "reproduce_paper_scale": ["reproduce"], "pretrain": ["pretrain"],
             "pretrain_paper_scale": ["pretrain"], "synth_demo": ["synth"],
             "synth_paper_scale": ["synth"], "ptbxl_pool_encoder": ["pretrain"]}


def _flag_lines(path):
    names = []
    for line in open(path):
        line = line.strip()
        if line.startswith("--"):
            name = line[2:].split("=")[0]
            names.append(name[2:] if "=" not in line and name.startswith("no") else name)
    return names


def test_every_flag_file_parses_for_its_command():
    files = {os.path.basename(p)[:-6]: p for p in glob.glob(os.path.join(REPO, "flags",
                                                                           "*.flags"))}
    assert set(files) == set(FLAGFILES)
    for name, commands in FLAGFILES.items():
        for cmd in commands:
            with parsed(cmd, f"--flagfile={files[name]}"):
                for flag in _flag_lines(files[name]):
                    assert flags.FLAGS[flag].present, (name, cmd, flag)
                if cmd in ("pretrain", "finetune", "reproduce"):
                    configs = _configs(cmd)
            if name == "paper_protocol":
                assert configs["finetune"].bn_momentum == 0.99
            if name == "pretrain" and cmd == "pretrain":
                assert (configs["pretrain"].momentum, configs["pretrain"].version) == (0.99, 2)


# canonical name -> {command: earlier names still accepted there (aliases)}, with a value
SAME_SETTING = {
    "moco_momentum": ({"pretrain": ["momentum"], "reproduce": []}, "0.9"),
    "moco_momentum_final": ({"pretrain": ["momentum_final"], "reproduce": []}, "0.99"),
    "moco_version": ({"pretrain": ["version"], "reproduce": []}, "1"),
    "input": ({"predict": ["manifest"], "explain": ["records", "manifest"]}, "ecgs.csv"),
    "encoder": ({"finetune": [], "reproduce": ["pretrained_encoder"]}, "ptbxl-pool"),
    "ptbxl_root": ({"ptbxl": ["root"], "reproduce": []}, "ptb"),
    "ptbxl_label": ({"ptbxl": ["label"], "reproduce": []}, "NORM"),
    "ptbxl_pool": ({"ptbxl": ["pool"], "reproduce": []}, "pool"),
    "ptbxl_pretrain_folds": ({"ptbxl": ["pretrain_folds"], "reproduce": []}, "1,2"),
}


def test_a_setting_has_one_name_in_every_command_and_earlier_names_still_work():
    for canonical, (commands, value) in SAME_SETTING.items():
        extra = ["--ptbxl_root=ptb"] if canonical == "ptbxl_pool" else []   # needs it
        for cmd, earlier in commands.items():
            with parsed(cmd, *extra, f"--{canonical}={value}") as names:
                assert canonical in names and not _is_alias(canonical), (cmd, canonical)
                want = flags.FLAGS[canonical].value
                assert want != flags.FLAGS[canonical].default
            for old in earlier:
                with parsed(cmd, *extra, f"--{old}={value}") as names:
                    assert old in names and _is_alias(old)
                    assert flags.FLAGS[canonical].value == want, (cmd, old)


def test_reproduce_names_every_training_setting_as_pretrain_and_finetune_do():
    """Each of pretrain's and finetune's own flags is in reproduce under the same name, the
    pretraining optimizer's with the pretrain_ prefix (fine-tuning has the bare names)."""
    def own(cmd):
        with parsed(cmd) as names:
            return {n for n in names if not _is_alias(n)}

    reproduce = own("reproduce")
    for cmd, only_there in (("pretrain", {"shards", "renormalize"}), ("finetune", {"experiment"})):
        for name in sorted(own(cmd) - only_there):
            prefixed = cmd == "pretrain" and name in common.REPRODUCE_PRETRAIN_PREFIXED
            assert ("pretrain_" + name if prefixed else name) in reproduce, (cmd, name)


def test_verbose_shows_the_progress_bar_within_epochs(cli, records, tmp_path):  # noqa: F811
    bar = "\u2501"                                            # Keras' progress bar
    args = [f"--manifest={records[1]}", "--epochs=1", "--batch_size=4", *TINY_FLAGS]
    rc, out, err = cli("pretrain", *args, "--queue_size=4", "--monitor_every=0",
                       f"--out={tmp_path / 'pre'}", "--verbose")
    assert rc == 0 and bar in out, err[-2000:]
    ft = [*args, "--experiment=baseline_full_labels", "--learning_rates=1e-3"]
    rc, out, err = cli("finetune", *ft, f"--out={tmp_path / 'ft1'}", "--verbose")
    assert rc == 0 and bar in out, err[-2000:]
    rc, out, err = cli("finetune", *ft, f"--out={tmp_path / 'ft2'}")          # default
    assert rc == 0 and bar not in out and "loss:" in out, err[-2000:]   # one line
    assert os.listdir(tmp_path / "ft2" / "tensorboard" / "lr0.001")   # TensorBoard events


@pytest.mark.parametrize("cmd", ["synth", "reproduce"])
def test_cohort_flag_defaults_are_the_cohort_config_defaults(cmd):
    from ecg_moco_tf.data.synthetic import CohortConfig

    with parsed(cmd) as names:
        for field in ("num_patients", "prevalence", "phenotype_scale", "mains_hz", "seed"):
            if field in names:
                assert flags.FLAGS[field].value == getattr(CohortConfig(), field), (cmd, field)
        assert {"num_patients", "prevalence", "phenotype_scale"} <= names
