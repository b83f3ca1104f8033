"""The toy profiles train in fp32: bfloat16's speed depends on optional CPU instruction sets (AVX512-BF16, AMX);
without them its matrix products are emulated, and `make book`'s training took an hour instead of minutes."""

import pytest

from residual_lib.toy.train import CONFIGS


@pytest.mark.parametrize("profile", sorted(CONFIGS))
def test_every_profile_trains_in_fp32(profile):
    assert CONFIGS[profile].precision == "fp32", (
        f"toy profile {profile!r} trains in {CONFIGS[profile].precision}: the default build must not depend on "
        "the CPU's optional instruction sets")
