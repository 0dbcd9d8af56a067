"""Tests of the mesh divisibility check."""

import pytest

from ankh3_tasks import mesh

XL = dict(num_heads=32, mlp_dim=6720, vocab_size=256)


def test_paper_topologies_divide():
  assert mesh.check_mesh(
      num_devices=64, num_partitions=1, batch_size=1024, **XL
  ) == {"data": 64, "model": 1}
  assert mesh.check_mesh(
      num_devices=64, num_partitions=2, batch_size=1024, **XL
  ) == {"data": 32, "model": 2}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(num_devices=64, num_partitions=3, batch_size=1024),
            "num_partitions 3 does not divide the 64 devices",
        ),
        (
            dict(num_devices=64, num_partitions=1, batch_size=1000),
            "Batch size 1000 does not divide over the 64-way data axis",
        ),
        (
            dict(
                num_devices=64, num_partitions=64, batch_size=1024, num_heads=32
            ),
            "num_heads 32 does not divide over the 64-way",
        ),
        (
            dict(
                num_devices=8,
                num_partitions=8,
                batch_size=8,
                num_heads=8,
                mlp_dim=6724,
            ),
            "mlp_dim 6724",
        ),
        (
            dict(
                num_devices=8,
                num_partitions=8,
                batch_size=8,
                num_heads=8,
                mlp_dim=64,
                vocab_size=250,
            ),
            "vocab_size 250",
        ),
    ],
)
def test_what_does_not_divide_is_named(kwargs, message):
  with pytest.raises(ValueError, match=message):
    mesh.check_mesh(**{**XL, **kwargs})
