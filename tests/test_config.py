from aimonk.config import PRESETS, TrainConfig



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
