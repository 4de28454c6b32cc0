

def test_presets_default_trains_the_head_only_and_finetune_the_backbone():
    from aimonk.config import PRESETS
    from aimonk.features import HEAD_ONLY_AUGMENTATIONS

    assert PRESETS["default"].freeze == "all" and PRESETS["default"].augment in HEAD_ONLY_AUGMENTATIONS
    assert PRESETS["finetune"].freeze == 2 and PRESETS["finetune"].augment == "strong"
    assert PRESETS["reference"].backbone == "resnet34"
