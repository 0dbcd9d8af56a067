"""Checks that a batch and a model divide a device mesh.

T5X's `PjitPartitioner(num_partitions=m)` lays `n` devices out as an
(n / m data) x (m model) mesh. With its standard logical axis rules the batch
is split over `data`, and the heads, MLP and vocabulary dimensions over
`model`; each must divide evenly.

  check_mesh(num_devices=64, num_partitions=2, batch_size=1024,
             num_heads=32, mlp_dim=6720, vocab_size=256)
  -> {'data': 32, 'model': 2}
"""


def check_mesh(
    *,
    num_devices: int,
    num_partitions: int,
    batch_size: int,
    num_heads: int,
    mlp_dim: int,
    vocab_size: int,
) -> dict[str, int]:
  """Returns the mesh shape, or raises naming what does not divide.

  Args:
    num_devices: JAX devices in the job (TPU v4: one per chip).
    num_partitions: model-parallel ways (`PjitPartitioner.num_partitions`).
    batch_size: global batch, in packed rows.
    num_heads: attention heads.
    mlp_dim: hidden width of the MLP.
    vocab_size: vocabulary size (the output layer's width).

  Returns:
    `{'data': num_devices // num_partitions, 'model': num_partitions}`.

  Raises:
    ValueError: for a partition count that does not divide the devices, or a
      batch or dimension that does not divide its mesh axis.
  """
  if num_partitions < 1 or num_devices % num_partitions:
    raise ValueError(
        f"num_partitions {num_partitions} does not divide the {num_devices} "
        "devices."
    )
  data = num_devices // num_partitions
  if batch_size % data:
    raise ValueError(
        f"Batch size {batch_size} does not divide over the {data}-way data "
        f"axis ({num_devices} devices / {num_partitions} partitions)."
    )
  for name, size in (
      ("num_heads", num_heads),
      ("mlp_dim", mlp_dim),
      ("vocab_size", vocab_size),
  ):
    if size % num_partitions:
      raise ValueError(
          f"{name} {size} does not divide over the {num_partitions}-way "
          "model axis."
      )
  return {"data": data, "model": num_partitions}
