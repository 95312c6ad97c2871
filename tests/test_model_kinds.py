"""What a model file is for (engine.models.kinds): every family module says which files are its
own, the store records the role with the model, and a file used in the wrong place is named."""

import pytest
import torch

from engine.errors import ModelFileError
from engine.models import kinds
from engine.models.tiny import build_tiny, tiny_adm_config, tiny_classifier_config, tiny_ddpm_config


@pytest.mark.parametrize("make, family, role", [
    (tiny_adm_config, "adm", kinds.DIFFUSION),
    (tiny_ddpm_config, "ddpm", kinds.DIFFUSION),
    (tiny_classifier_config, "adm-classifier", kinds.CLASSIFIER),
])
def test_a_file_says_its_family_and_role(tmp_path, make, family, role):
    path = tmp_path / "m.pt"
    torch.save({"state_dict": build_tiny(make()).state_dict()}, path)
    kind = kinds.inspect_file(path)
    assert (kind.family, kind.role) == (family, role)
    assert kinds.role_of(family) == role and kind.config.family == family and kind.summary


def test_a_file_no_family_claims_is_refused_naming_what_is_expected(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ModelFileError, match="not a model the app can use; expected .*ADM UNet"):
        kinds.inspect_file(path)


def test_every_family_has_a_known_role_and_unknown_ones_count_as_diffusion():
    roles = kinds.family_roles()
    assert {"adm", "ddpm", "adm-classifier"} <= set(roles)
    assert set(roles.values()) <= set(kinds.ROLE_NAMES)
    assert kinds.role_of("made-up") == kinds.DIFFUSION


def test_a_model_used_in_the_wrong_place_is_named_with_advice():
    kind = kinds.ModelKind(family="x", role=kinds.CLASSIFIER, summary="ADM classifier, 256 px")
    kinds.refuse_role(kind, kinds.CLASSIFIER, "c.pt")  # the right role: nothing to say
    with pytest.raises(ModelFileError, match=r"c.pt is a classifier for guidance \(ADM classifier, 256 px\), "
                                             r"not a diffusion model .*\. Use it in Advanced"):
        kinds.refuse_role(kind, kinds.DIFFUSION, "c.pt", "Use it in Advanced")


def test_a_layout_mismatch_names_what_is_missing_unexpected_and_misshapen():
    expected = {f"m{i}": (3,) for i in range(5)} | {"w": (3, 3)}
    actual = {"m0": (3,), "w": (3, 4), "extra": (1,)}
    assert kinds.layout_mismatch(expected, actual) == ("missing: m1, m2, m3 ...; unexpected: extra; "
                                                       "wrong shape: w")
    assert kinds.layout_mismatch(expected, dict(expected)) == ""
