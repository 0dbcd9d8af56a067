"""Cloud TPU accelerator types: zones, runtime versions, chips and hosts.

An accelerator type is `FAMILY-SIZE`, as `gcloud` spells it: `v4-128`,
`v5litepod-16`, `v6e-8`. For v2, v3, v4 and v5p the size counts TensorCores
(two per chip, four chips per host); for v5litepod (v5e) and v6e it counts
chips. The paper's slice, `v4-128`, is 64 chips on 16 hosts.
"""

import dataclasses
import re

from ankh3_tasks import hardware

# Zones that offer each TPU generation, from Cloud TPU's "TPU regions and
# zones" page (https://cloud.google.com/tpu/docs/regions-zones), as it read in
# 2025. Zones change: `--allow_any_zone` skips this check.
ZONES: dict[str, tuple[str, ...]] = {
    "v2": ("us-central1-a", "us-central1-b", "us-central1-c", "europe-west4-a"),
    "v3": ("us-central1-a", "us-central1-b", "europe-west4-a"),
    "v4": ("us-central2-b",),
    "v5litepod": (
        "us-central1-a",
        "us-south1-a",
        "us-west1-c",
        "us-west4-a",
        "europe-west4-b",
    ),
    "v5p": ("us-central1-a", "us-east5-a", "europe-west4-b"),
    "v6e": (
        "us-central1-b",
        "us-east1-d",
        "us-east5-a",
        "us-east5-b",
        "europe-west4-a",
    ),
}

# The TPU VM runtime (`--version`) Cloud TPU's "TPU software versions" page
# names for JAX on each generation.
RUNTIME_VERSIONS: dict[str, str] = {
    "v2": "tpu-ubuntu2204-base",
    "v3": "tpu-ubuntu2204-base",
    "v4": "tpu-ubuntu2204-base",
    "v5litepod": "v2-alpha-tpuv5-lite",
    "v5p": "v2-alpha-tpuv5",
    "v6e": "v2-alpha-tpuv6e",
}

# Generations whose type names count TensorCores rather than chips.
_TYPE = re.compile(r"^([a-z0-9]+)-([1-9][0-9]*)$")


@dataclasses.dataclass(frozen=True)
class Accelerator:
  """A parsed accelerator type, e.g. `Accelerator("v4", 128)` for v4-128."""

  family: str
  size: int

  @property
  def name(self) -> str:
    return f"{self.family}-{self.size}"

  @property
  def known(self) -> bool:
    """Whether the family is in this module's tables."""
    return self.family in ZONES

  @property
  def chips(self) -> int:
    return hardware.tpu_chips(self.family, self.size)

  @property
  def hosts(self) -> int:
    """TPU VM workers of the slice (`--worker=all` runs on each)."""
    return hardware.tpu_hosts(self.family, self.size)

  @property
  def multi_host(self) -> bool:
    """Whether the slice has more than one host; unknown families do."""
    return self.hosts > 1 or not self.known


def parse(accelerator_type: str, *, allow_unknown: bool = False) -> Accelerator:
  """Parses an accelerator type such as `v4-128`.

  Args:
    accelerator_type: `FAMILY-SIZE` as `gcloud --accelerator-type` takes it.
    allow_unknown: accept a family this module has no table for (then the
      slice counts as multi-host).

  Returns:
    The parsed type.

  Raises:
    ValueError: the type is malformed, or of an unknown family.
  """
  match = _TYPE.match(accelerator_type)
  if not match:
    raise ValueError(
        f"accelerator type {accelerator_type!r} is not of the form"
        " FAMILY-SIZE, e.g. v4-128"
    )
  accelerator = Accelerator(match.group(1), int(match.group(2)))
  if not accelerator.known and not allow_unknown:
    families = ", ".join(f"{f}-N" for f in ZONES)
    raise ValueError(
        f"unknown accelerator type {accelerator_type!r}; known: {families}"
        " (--allow_any_zone accepts others)"
    )
  return accelerator


def check_zone(accelerator: Accelerator, zone: str) -> None:
  """Raises ValueError if `zone` does not offer the accelerator's family."""
  zones = ZONES.get(accelerator.family)
  if zones is None or zone in zones:
    return
  raise ValueError(
      f"zone {zone} does not offer TPU {accelerator.family}"
      f" ({accelerator.name}); {accelerator.family} is in: {', '.join(zones)}."
      " (Table from https://cloud.google.com/tpu/docs/regions-zones;"
      " --allow_any_zone skips this check.)"
  )
