"""Reads a model from gin and the parameters of a T5X checkpoint (needs T5X).

  model = checkpoints.load_model("gin/models/ankh3_large.gin")
  params = checkpoints.load_params("gs://bucket/ankh3_large/checkpoint_4000000")
  params["encoder"]["layers_0"]["attention"]["query"]["kernel"]

Works for the Orbax checkpoints `t5x.train` writes (`checkpoint_N/state`)
and for T5X's older TensorStore format, which `t5x.checkpoints` reads.
"""

from collections.abc import Sequence
import os
from typing import Any, Optional

import numpy as np
import tensorflow as tf


def load_params(checkpoint_dir: str) -> dict[str, Any]:
  """Returns the model parameters of `checkpoint_dir` as numpy arrays.

  Args:
    checkpoint_dir: a `checkpoint_N` directory of a T5X model directory.

  Returns:
    The parameter tree (`token_embedder`, `encoder`, `decoder`), as nested
    dicts of numpy arrays, in the dtype they were saved in.

  Raises:
    FileNotFoundError: when `checkpoint_dir` holds no T5X checkpoint.
  """
  import jax  # pylint: disable=g-import-not-at-top

  state_dir = os.path.join(checkpoint_dir, "state")
  if tf.io.gfile.exists(os.path.join(state_dir, "_METADATA")):
    # pylint: disable=g-import-not-at-top
    from etils import epath
    import orbax.checkpoint as ocp

    # pylint: enable=g-import-not-at-top
    # Restored as numpy arrays: no devices, no sharding to infer (Orbax
    # warns once per array when it must read the sharding from the files).
    tree = ocp.PyTreeCheckpointHandler().metadata(epath.Path(state_dir)).tree
    as_numpy = jax.tree_util.tree_map(
        lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree
    )
    state = ocp.PyTreeCheckpointer().restore(
        state_dir, args=ocp.args.PyTreeRestore(restore_args=as_numpy)
    )
    params = state["target"]
  elif tf.io.gfile.exists(os.path.join(checkpoint_dir, "checkpoint")):
    from t5x import checkpoints  # pylint: disable=g-import-not-at-top

    params = checkpoints.load_t5x_checkpoint(checkpoint_dir)["target"]
  else:
    raise FileNotFoundError(
        f"No T5X checkpoint in {checkpoint_dir}: expected "
        "checkpoint_N/state (Orbax) or checkpoint_N/checkpoint."
    )
  return jax.tree_util.tree_map(np.asarray, params)


def param_shapes(checkpoint_dir: str) -> Optional[dict[str, Any]]:
  """The parameter tree of an Orbax `checkpoint_N`, as metadata (`.shape`).

  Reads only the checkpoint's metadata, however large the model. None for a
  directory without Orbax metadata (T5X's older format, or none at all).
  """
  state_dir = os.path.join(checkpoint_dir, "state")
  if not tf.io.gfile.exists(os.path.join(state_dir, "_METADATA")):
    return None
  # pylint: disable=g-import-not-at-top
  from etils import epath
  import orbax.checkpoint as ocp

  # pylint: enable=g-import-not-at-top
  # The handler reads the tree's metadata alone (the checkpointer would also
  # look for, and warn about, a step metadata file T5X does not write).
  metadata = ocp.PyTreeCheckpointHandler().metadata(epath.Path(state_dir))
  return metadata.tree["target"]


def params_config(
    params: dict[str, Any], relative_attention_max_distance: int
) -> Any:
  """The `network.Ankh3Config` shapes of a checkpoint's parameters (T5X).

  Args:
    params: a parameter tree, as `load_params` returns it.
    relative_attention_max_distance: not stored in the parameters; taken as
      given.

  Returns:
    A config with the sizes the parameters have.
  """
  from ankh3_tasks import network  # pylint: disable=g-import-not-at-top

  encoder = params["encoder"]
  heads, buckets = encoder["relpos_bias"]["rel_embedding"].shape
  vocab_size, emb_dim = params["token_embedder"]["embedding"].shape
  return network.Ankh3Config(
      vocab_size=vocab_size,
      emb_dim=emb_dim,
      num_heads=heads,
      num_encoder_layers=sum(k.startswith("layers_") for k in encoder),
      num_decoder_layers=sum(
          k.startswith("layers_") for k in params["decoder"]
      ),
      # The query kernel is [d_model, heads * head_dim].
      head_dim=encoder["layers_0"]["attention"]["query"]["kernel"].shape[-1]
      // heads,
      mlp_dim=encoder["layers_0"]["mlp"]["wo"]["kernel"].shape[0],
      relative_attention_num_buckets=buckets,
      relative_attention_max_distance=relative_attention_max_distance,
  )


_CHECKED_FIELDS = (
    "vocab_size",
    "emb_dim",
    "num_heads",
    "num_encoder_layers",
    "num_decoder_layers",
    "head_dim",
    "mlp_dim",
    "relative_attention_num_buckets",
    "relative_attention_max_distance",
)


def check_config(expected: Any, found: Any) -> None:
  """Raises ValueError naming the first field where network configs differ."""
  for field in _CHECKED_FIELDS:
    want, got = getattr(expected, field), getattr(found, field)
    if want != got:
      raise ValueError(
          f"Config mismatch in {field}: the gin model has {want}, the "
          f"checkpoint has {got}."
      )


def load_model(
    gin_file: str,
    search_paths: Sequence[str] = (),
    bindings: Sequence[str] = (),
) -> Any:
  """Builds the `MODEL` of a gin file (a model file, or a whole experiment).

  Args:
    gin_file: e.g. `gin/models/ankh3_large.gin`, found as given, under
      `search_paths`, the current directory or this package's gin tree.
    search_paths: extra gin search paths.
    bindings: extra gin bindings, applied after the file. `DROPOUT_RATE`
      is 0 unless the file or a binding sets it.

  Returns:
    The `t5x.models.EncoderDecoderModel` the file configures.
  """
  # pylint: disable-next=g-import-not-at-top
  from ankh3_tasks import t5x_adapter

  return t5x_adapter.load_gin([gin_file], bindings, search_paths).model
