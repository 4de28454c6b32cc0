import pytest

from aimonk.config import (PRESETS, TrainConfig, check_backbone, check_freeze, check_frozen_stages,
                           freeze_from_text)


def test_presets_default_trains_the_head_only_and_finetune_the_backbone():
    from aimonk.config import PRESETS
    from aimonk.model.recipe import HEAD_ONLY_AUGMENTATIONS

    assert PRESETS["default"].freeze == "all" and PRESETS["default"].augment in HEAD_ONLY_AUGMENTATIONS
    assert PRESETS["finetune"].freeze == 2 and PRESETS["finetune"].augment == "strong"
    assert PRESETS["reference"].backbone == "resnet34"


def test_the_reference_preset_is_the_first_public_solution():
    """ResNet-34, conv1..layer2 frozen, Dropout(0.4) + Linear, masked BCE with pos_weight, Adam 1e-4 (wd 1e-4),
    batch 32, strong augmentation, split stratified on the last attribute, 8 epochs, best epoch by
    validation F1, thresholds tuned on the validation split; nothing of ours (no TTA, no oversampling)."""
    from aimonk.config import PRESETS

    reference = PRESETS["reference"]
    expected = dict(backbone="resnet34", freeze=3, dropout=0.4, loss="bce", pos_weight=True, lr=1e-4,
                    weight_decay=1e-4, batch_size=32, augment="strong", split="last_attribute", epochs=8,
                    schedule="constant", keep="best", threshold_source="val", tta=False, oversample=1.0, ema=0.0,
                    head_epochs=0, val_fraction=0.15)
    assert {name: getattr(reference, name) for name in expected} == expected


def test_the_configuration_knows_exactly_the_backbones_the_factory_builds():
    from aimonk.config import BACKBONE_NAMES
    from aimonk.model.registry import BACKBONES

    assert tuple(BACKBONES) == BACKBONE_NAMES


def test_the_weight_decay_help_names_the_optimizer_that_uses_it():
    import dataclasses

    import torch

    from conftest import model_of
    from aimonk.training.optim import make_optimizer

    optimizer = make_optimizer(model_of("resnet18", 2, weights="none"), TrainConfig())
    help_text = {f.name: f.metadata["help"] for f in dataclasses.fields(TrainConfig)}["weight_decay"]
    assert type(optimizer) is torch.optim.Adam and help_text.startswith("Adam's weight decay")
    assert "AdamW" not in help_text


def test_derived_configurations_are_valid_for_every_preset():
    for name, config in PRESETS.items():
        for derived in (config.for_fold(), config.for_final_model()):
            assert derived.keep == "last" and derived.val_fraction == 0.0 and derived.threshold_source == "none"
            assert derived.replace(threshold_source=config.threshold_source, val_fraction=config.val_fraction,
                                   keep=config.keep) == config, name


@pytest.mark.parametrize("freeze", ["all", -1, 0, 3])
def test_freeze_takes_all_minus_one_or_a_number_of_stages(freeze):
    check_freeze(freeze)
    assert TrainConfig(freeze=freeze).freeze == freeze


@pytest.mark.parametrize("freeze", [-2, 1.5, True, "most", "3", None])
def test_any_other_freeze_is_one_line_naming_the_option(freeze):
    with pytest.raises(ValueError, match=r"^freeze must be a number of stages \(0 or more\), -1 or 'all', not "):
        check_freeze(freeze)
    with pytest.raises(ValueError, match="^freeze must be"):
        TrainConfig(freeze=freeze)


def test_freeze_as_typed_is_a_whole_number_or_all():
    assert [freeze_from_text(text) for text in ("all", "-1", "0", "12", "-2")] == ["all", -1, 0, 12, -2]
    with pytest.raises(ValueError, match="^freeze must be a number of stages .* not 'most'$"):
        freeze_from_text("most")


def test_frozen_stages_run_from_none_to_all_of_the_backbones():
    check_frozen_stages(0, ("a", "b"))
    check_frozen_stages(2, ("a", "b"))
    for count in (-1, 3):
        with pytest.raises(ValueError, match=rf"^freeze must be between 0 and 2 stages \(a, b\), not {count}$"):
            check_frozen_stages(count, ("a", "b"))


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_lite0+efficientnet_lite1", "timm:convnext_atto",
                                      "resnet50+timm:resnet10t"])
def test_our_backbones_timm_names_and_joins_of_them_are_known(backbone):
    check_backbone(backbone)


@pytest.mark.parametrize("backbone, unknown", [("vgg", "vgg"), ("resnet18+vgg16", "vgg16"), ("timm:", "timm:"),
                                               ("resnet18+", "")])
def test_an_unknown_backbone_is_named_in_one_line(backbone, unknown):
    with pytest.raises(ValueError, match=rf"^unknown backbone '{unknown}'; choose one of resnet18, .*'\+'") as error:
        check_backbone(backbone)
    assert "\n" not in str(error.value)
