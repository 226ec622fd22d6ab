"""Flags shared by several commands, defined on demand under the calling command's name so
that ``ecg-moco CMD --help`` lists them with the command's own flags."""
from absl import flags

from ecg_moco_tf.models import encoder as enc

FLAGS = flags.FLAGS


def define_encoder_flags(module_name):
    m = {"module_name": module_name}
    flags.DEFINE_list("kernel_sizes", [str(k) for k in enc.KERNELS],
                      "Temporal kernel sizes K, one per block.", **m)
    flags.DEFINE_list("filters", [str(f) for f in enc.FILTERS], "Filters per temporal block.", **m)
    flags.DEFINE_list("pools", [str(p) for p in enc.POOLS], "Max-pool size per temporal block.", **m)
    flags.DEFINE_integer("spatial_filters", 128, "Filters of the 12 x 1 spatial convolution.", **m)
    flags.DEFINE_integer("feature_dim", 128, "Encoder output (feature) size.", **m)


def encoder_kwargs():
    """``build_encoder`` arguments from the encoder flags."""
    return dict(kernel_sizes=[int(k) for k in FLAGS.kernel_sizes],
                filters=[int(f) for f in FLAGS.filters], pools=[int(p) for p in FLAGS.pools],
                spatial_filters=FLAGS.spatial_filters, feature_dim=FLAGS.feature_dim)


def encoder_from_flags():
    return enc.build_encoder(**encoder_kwargs())


def augment_overrides_from_flags():
    """``--augment_overrides`` (JSON: transform class name -> constructor arguments) as a dict,
    checked against ``--augmentations``: ``ValueError`` naming the problem (bad JSON, unknown
    transform or parameter, an override of a transform that is not used)."""
    import json

    from ecg_moco_tf.augment import build_augmenter

    text = (FLAGS.augment_overrides or "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--augment_overrides is not valid JSON ({e}): {text!r}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError("--augment_overrides must be a JSON object of objects, e.g. "
                         '\'{"GaussianNoise": {"max_std_mv": 0.1}}\'')
    build_augmenter(list(FLAGS.augmentations) or None, **value)     # raises with the reason
    return value


def define_manifest_flag(module_name, required=True):
    flags.DEFINE_string("manifest", None, "Manifest (CSV or Parquet) with a 'split' column.",
                        required=required, module_name=module_name)
