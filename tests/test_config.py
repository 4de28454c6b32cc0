

def test_presets_default_trains_the_head_only_and_finetune_the_backbone():
    from aimonk.config import PRESETS
    from aimonk.features import HEAD_ONLY_AUGMENTATIONS

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
    from aimonk.models import BACKBONES

    assert tuple(BACKBONES) == BACKBONE_NAMES
